"""Latency decomposition of one step: where the client-observed mean latency goes.

    client mean = queueing + batching delay + compute + rest
    rest        = server overhead (request time not spent queued or computing: deserialisation,
                  validation, splitting results) + outside the server (network, serialisation in the
                  client, the load generator's own scheduling)

Server figures are means over the step from the server's histograms (ServerDeltas). The server's queue
time holds two different waits that its metrics do not separate: the batching window (a request waits up
to max_queue_delay for others to join its batch, even on an idle server) and true queueing (it waits for
an earlier batch to finish). We attribute the first min(queue time, max_queue_delay) of the queue time to
the batching window and the remainder to queueing. On an idle server this is exact (the whole wait is the
window); on a saturated one the window is at most a small part of the wait, so the error stays small
where queueing matters. With batching off the whole queue time is queueing.

Compute is the mean compute time of one executed batch; every request of a batch waits for all of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.steps import batching_enabled
from servescope.results import StepRecord


@dataclass
class Decomposition:
    """Mean client latency split into its parts, in seconds; None where the server was not scraped."""

    client_mean_s: float
    queueing_s: float | None
    batching_delay_s: float | None
    compute_s: float | None
    rest_s: float | None
    server_overhead_s: float | None  # part of rest spent inside the server
    outside_server_s: float | None  # part of rest spent outside: network, serialisation, client
    note: str | None = None

    def share(self, component: str) -> float | None:
        value = getattr(self, component)
        if value is None or self.client_mean_s <= 0:
            return None
        return value / self.client_mean_s

    @property
    def available(self) -> bool:
        return self.compute_s is not None


def decompose(step: StepRecord) -> Decomposition:
    assert step.latency_s is not None  # left-out steps never reach here
    client_mean_s = step.latency_s.mean
    server = step.server
    if server is None or server.compute_mean_s is None or server.queue_mean_s is None:
        return Decomposition(
            client_mean_s,
            None,
            None,
            None,
            None,
            None,
            None,
            note="server metrics not recorded for this step",
        )
    queue_s = server.queue_mean_s
    delay_s = (step.server_settings.max_queue_delay_us or 0) / 1e6 if batching_enabled(step) else 0.0
    batching_delay_s = min(queue_s, delay_s)
    queueing_s = queue_s - batching_delay_s
    compute_s = server.compute_mean_s
    note = None
    inside_s = queue_s + compute_s
    rest_s = client_mean_s - inside_s
    if rest_s < 0:
        # The server's means cover every request it saw in the window, the client's only those it timed;
        # a small negative rest is that mismatch, not time travel.
        note = f"server queue+compute ({inside_s * 1e3:.3f} ms) exceeds the client mean; rest set to 0"
        rest_s = 0.0
    request_s = server.request_mean_s
    server_overhead_s: float | None = None
    outside_server_s: float | None = None
    if request_s is not None:
        server_overhead_s = min(max(request_s - inside_s, 0.0), rest_s)
        outside_server_s = rest_s - server_overhead_s
    return Decomposition(
        client_mean_s=client_mean_s,
        queueing_s=queueing_s,
        batching_delay_s=batching_delay_s,
        compute_s=compute_s,
        rest_s=rest_s,
        server_overhead_s=server_overhead_s,
        outside_server_s=outside_server_s,
        note=note,
    )
