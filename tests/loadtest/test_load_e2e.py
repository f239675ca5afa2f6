"""`servescope load` against a real server: counts agree with the server, open-loop rate, distributed mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from loadtest.engine import LoadLevel, StepLoad, engine
from loadtest.procs import REPO_ROOT, child_env, free_port
from loadtest.runner import StepTiming, run_step
from loadtest.samples import SAMPLE_DTYPE
from loadtest.server_proc import ManagedServer
from servescope import results
from tests.loadtest.load_command import run_load

pytestmark = pytest.mark.slow


def test_closed_loop_counts_match_the_server(running_server: ManagedServer, tmp_path: Path) -> None:
    output = tmp_path / "load"
    run_load(
        output,
        target=running_server.target,
        model="sentiment_fp32",
        users=4,
        rate_rps=None,
        duration_s=3.0,
        warmup_s=1.0,
        metrics_url=running_server.metrics_url,
    )
    info = results.read_campaign(output)
    steps, skipped = results.read_steps(output)
    assert skipped == [] and len(steps) == 1 and info.interrupted is False and info.finished_at
    step = steps[0]
    assert step.model == "sentiment_fp32" and step.precision == "fp32"
    assert step.load.mode == "closed" and step.load.users == 4
    assert step.errors_by_code == {}
    assert step.completed > 50
    assert step.duration_s == pytest.approx(3.0, abs=0.1)
    assert step.requests_per_s == pytest.approx(step.completed / step.duration_s)
    assert len(step.windows) == 3 and sum(w.completed for w in step.windows) == step.completed
    # The server counted the same requests in the same interval, within one second's worth.
    assert step.server is not None and step.server.source == "servescope"
    served = step.server.requests_by_code["OK"]
    assert abs(served - step.completed) <= step.requests_per_s, (served, step.completed)
    assert step.server.inferences == pytest.approx(served)
    assert step.server_settings.device == "cpu" and step.server_settings.server == "servescope"
    assert step.latency_s is not None and 0 < step.latency_s.p50 <= step.latency_s.p99 <= step.latency_s.max
    assert step.cpu.generator_cores is not None and step.cpu.generator_cores > 0
    assert step.cpu.server_cores is not None and step.cpu.server_cores > 0
    samples = np.load(output / step.samples_file)
    assert samples.size == step.completed
    # Locust's own reports are there too.
    stats = json.loads((output / "locust" / "locust.json").read_text())
    assert stats[0]["name"] == "sentiment_fp32" and stats[0]["num_failures"] == 0
    assert stats[0]["num_requests"] >= step.completed
    assert (output / "locust" / "locust.html").is_file()
    assert (output / "locust" / "locust_stats.csv").is_file()


def test_open_loop_rate_is_honoured(running_server: ManagedServer, tmp_path: Path) -> None:
    output = tmp_path / "open"
    run_load(
        output,
        target=running_server.target,
        model="sentiment_int8",
        users=None,
        rate_rps=80.0,
        arrival="constant",
        duration_s=3.0,
        warmup_s=1.0,
        batch_size=2,
    )
    step = results.read_steps(output)[0][0]
    assert step.load.mode == "open" and step.load.rate_rps == 80.0 and step.load.arrival == "constant"
    assert step.errors_by_code == {}
    assert step.requests_per_s == pytest.approx(80.0, rel=0.10)
    assert step.inferences_per_s == pytest.approx(2 * step.requests_per_s)
    assert step.server is None  # no --metrics-url given


def test_dropped_arrivals_are_counted_apart_from_locust_requests(
    running_server: ManagedServer, tmp_path: Path
) -> None:
    """An arrival dropped at the in-flight cap was never sent: it is reported as a drop, and Locust's own
    statistics (which a zero response time would pull down) hold only the requests sent."""
    output = tmp_path / "drops"
    run_load(
        output,
        target=running_server.target,
        model="sentiment_fp32",
        users=None,
        rate_rps=3000.0,
        arrival="constant",
        max_inflight=1,
        duration_s=1.5,
        warmup_s=0.5,
    )
    step = results.read_steps(output)[0][0]
    dropped = step.errors_by_code.get("CLIENT_DROPPED", 0)
    assert dropped > 0 and step.completed > 0
    assert "open-loop arrivals were dropped at the in-flight cap" in (step.note or "")
    (stats,) = json.loads((output / "locust" / "locust.json").read_text())
    assert stats["num_failures"] == 0  # drops are not failures of requests that were sent
    assert stats["min_response_time"] > 0
    assert "0" not in stats["response_times"] and 0 not in stats["response_times"]
    log = (output / "locust" / "locust.log").read_text()
    assert "open-loop arrivals were dropped (in-flight cap reached) and not sent" in log


def test_distributed_mode_totals_add_up(running_server: ManagedServer, tmp_path: Path) -> None:
    samples_dir = tmp_path / "raw"
    load = StepLoad(
        target=running_server.target,
        model="sentiment_fp32",
        levels=[LoadLevel("closed", users=4)],
        samples_dir=samples_dir,
        reports_dir=tmp_path / "locust",
        report_prefix="dist",
        workers=2,
    )
    timing = StepTiming(warmup_s=1.0, window_s=1.0, max_step_s=3.0, fixed=True)
    outcome = run_step(engine("locust"), load, timing, progress=lambda _line: None)
    per_worker = [
        np.fromfile(path, dtype=SAMPLE_DTYPE).size for path in sorted(samples_dir.glob("samples-*.bin"))
    ]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker
    assert outcome.measured.completed > 0 and outcome.measured.errors_by_code == {}
    # Locust's master saw exactly the requests its two workers recorded.
    master = json.loads((tmp_path / "locust" / "dist.json").read_text())
    assert sum(entry["num_requests"] for entry in master) == sum(per_worker)
    assert (tmp_path / "locust" / "dist-worker0.log").is_file()
    assert (tmp_path / "locust" / "dist-worker1.log").is_file()
    assert outcome.cpu.generator_cores is not None and outcome.cpu.generator_cores > 0


def test_ramp_gives_one_record_per_level(running_server: ManagedServer, tmp_path: Path) -> None:
    output = tmp_path / "ramp"
    run_load(
        output,
        target=running_server.target,
        model="sentiment_int8",
        users=4,
        rate_rps=None,
        duration_s=1.5,
        warmup_s=0.5,
        ramp_steps=2,
        metrics_url=running_server.metrics_url,
    )
    steps, _ = results.read_steps(output)
    assert [(s.step_index, s.load.users) for s in steps] == [(0, 2), (1, 4)]
    for step in steps:
        assert step.completed > 0 and step.errors_by_code == {}
        assert step.server is not None
        assert abs(step.server.requests_by_code["OK"] - step.completed) <= step.requests_per_s
    assert steps[1].started_at > steps[0].started_at


def test_unreachable_target_is_recorded_with_its_code_and_exit_1(tmp_path: Path) -> None:
    output = tmp_path / "dead"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "load", "--target", f"127.0.0.1:{free_port()}",
         "--model", "m", "--users", "2", "--duration-s", "1.5", "--warmup-s", "0.5", "--output", str(output)],
        cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("servescope load: error: no request to 'm' at 127.0.0.1:")
    assert "UNAVAILABLE" in lines[0]
    step = results.read_steps(output)[0][0]
    assert step.completed == 0 and set(step.errors_by_code) == {"UNAVAILABLE"}
    assert step.latency_s is None and "ModelMetadata for 'm' failed: UNAVAILABLE" in (step.note or "")
    # Locust's own tables: one stats row for the model, failures grouped by status code.
    stats = (output / "locust" / "locust_stats.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in stats[1:]] == ["m", "Aggregated"]
    failures = (output / "locust" / "locust_failures.csv").read_text().splitlines()
    assert len(failures) == 2 and "GrpcStatusError('UNAVAILABLE')" in failures[1]
