"""Overload soak: 256 closed-loop clients that retry at once, against a server with a small queue
(--max-queue-size 8: it holds 8 queued and 64 batched requests, so 256 clients are 3.5x what it holds).

What the server controls must stay bounded: the only refusals are RESOURCE_EXHAUSTED, memory is flat,
and accepted requests inside the server (servescope_request_duration_seconds) stay near their figures
at 32 clients. What the clients see on top of that is the wait in gRPC's front door before a call
reaches the server's code; with the front end as the bottleneck (2 shared cores) it grows with the
number of clients (Little's law), and it is recorded here, not bounded: docs/server.md, Reliability.

The CI form soaks for SOAK_S_DEFAULT seconds; SERVESCOPE_SOAK_S=600 runs the 10-minute soak.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from benchmarks.overload import ServeProcess

# 25 s: RSS is still sampled 9 times after the warm-up, every status is still seen thousands of times; the
# memory growth a leak would need to show in it is what SERVESCOPE_SOAK_S=600 is for (docs/server.md).
SOAK_S_DEFAULT = 25.0
HELD = 8 + 64  # --max-queue-size 8 queued, and a batch of max_batch_size 64 computing
REFERENCE_S = 10.0


@pytest.mark.slow
def test_overload_soak_keeps_refusals_memory_and_server_latency_bounded(model_repository: Path) -> None:
    soak_s = float(os.environ.get("SERVESCOPE_SOAK_S", SOAK_S_DEFAULT))
    server = ServeProcess(model_repository, ["--workers", "1", "--max-queue-size", "8"])
    rss: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(2.0):
            rss.append(server.rss_bytes())

    try:
        reference = server.measure(clients=32, duration_s=REFERENCE_S, retry="tight")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        soak = server.measure(clients=256, duration_s=soak_s, warmup_s=5.0, retry="tight")
        done.set()
        sampler.join(10)
    finally:
        done.set()
        assert server.stop() == 0
    print(f"\n32 clients: {reference.summary()}\n256 clients: {soak.summary()}")
    print(f"server RSS MB every 2 s: {[round(r / 2**20) for r in rss]}")
    for result in (reference, soak):
        assert set(result.codes) <= {"OK", "RESOURCE_EXHAUSTED"}, result.summary()
    assert soak.codes["RESOURCE_EXHAUSTED"] > 0 and soak.codes["OK"] > 0  # overloaded, and still serving
    # At most HELD requests are inside the server during the soak against at most 32 at the reference:
    # at equal throughput Little's law allows HELD / 32 times the reference's mean, and a quarter on top
    # for this shared machine's noise. More than that would mean requests waiting beyond the limits.
    bound = HELD / 32 * 1.25
    assert soak.server_mean_ms <= bound * reference.server_mean_ms, (reference.summary(), soak.summary())
    assert soak.server_p99_ms <= 3 * reference.server_p99_ms, (reference.summary(), soak.summary())
    assert soak.percentile_ms(99) < 2000, soak.summary()  # no collapse: far below the clients' 30 s timeout
    steady = rss[3:]  # from 6 s into the soak (its warm-up)
    assert steady and max(steady) <= 1.1 * min(steady), rss
