"""One request's stamps along the server's path (servescope/timeline.py is the contract).

A front end takes the time of the call's entry and of its admission for every inference call (two clock
reads, nothing allocated); only a request that asks for its timeline (servescope.timeline.ASK) gets a
`Stamps`, which the data plane and the batcher fill as the request moves and the front end returns in the
response's parameters. Every stamp is `time.monotonic_ns()`, one clock for every process of the host.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

from server.batcher import BatchOutcome
from servescope import timeline
from servescope.timeline import now_ns

__all__ = ["ENTRY", "Stamps", "now_ns"]

# gRPC unary calls: the entry and admission stamps the call's wrapper (servicer.py) took, for the handler
# (the same task, so the same context). None outside a wrapped call.
ENTRY: ContextVar[tuple[int, int] | None] = ContextVar("servescope_entry_ns", default=None)

_KEYS = {name: timeline.PREFIX + name for name in timeline.STAMPS}


class Stamps:
    """The stamps of one request, by name (timeline.STAMPS), in nanoseconds of CLOCK_MONOTONIC."""

    __slots__ = ("batch_size", "ns")

    def __init__(self, handler_ns: int, admitted_ns: int) -> None:
        self.ns: dict[str, int] = {"handler": handler_ns, "admitted": admitted_ns}
        self.batch_size = 0

    def stamp(self, name: str) -> None:
        self.ns[name] = now_ns()

    def batch(self, outcome: BatchOutcome) -> None:
        """The batcher's stamps: when this request was queued, and its batch's window, start and compute.

        A request that joined a window already open was queued after the window opened: its own window
        opens when it arrives (its queue time is zero), so the stamps stay in order."""
        times = outcome.times
        ns = self.ns
        ns["enqueued"] = outcome.enqueued_ns
        ns["window_open"] = max(times.window_open_ns, outcome.enqueued_ns)
        ns["batch_start"] = times.start_ns
        ns["compute_start"] = times.compute_start_ns
        ns["compute_end"] = times.compute_end_ns
        self.batch_size = outcome.batch_size

    def parameters(self) -> dict[str, Any]:
        """The response parameters that carry them (plain values: int for stamps, str for the clock).

        Takes the "returned" stamp: the front end calls it last, when the response is otherwise built."""
        self.stamp("returned")
        out: dict[str, Any] = {_KEYS[name]: value for name, value in self.ns.items()}
        out[timeline.CLOCK] = timeline.clock_id()
        out[timeline.WORKER] = os.getpid()
        out[timeline.BATCH_SIZE] = self.batch_size
        return out
