"""The request timeline's contract: what a client asks for, what the server stamps, and the parts between.

A client that wants to know where one request's time went sets the request parameter `ASK` (bool) and,
optionally, `CLIENT_SEND_NS` (its send time). The server then returns, in the response's parameters, one
int64 per stamp in `STAMPS` (`PREFIX + name`, nanoseconds on the server's `time.monotonic_ns()`), the
identity of that clock (`CLOCK`), the worker that served it and the size of the batch it ran in. Without
`ASK` nothing is stamped and nothing is returned.

CLOCK_MONOTONIC is one clock for every process of a Linux host (within one time namespace), so where the
client's `clock_id()` equals the server's `CLOCK`, client and server stamps subtract directly; elsewhere
the client must measure the offset (and its error) and say "not measured" when it cannot.

Stamps are named in the order they happen on the server's path; `SERVER_PARTS` names the spans between
consecutive ones, so the server's traces and the client's split use one definition.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass

ASK = "servescope.timeline"  # request: bool, return the stamps
CLIENT_SEND_NS = "servescope.client_send_ns"  # request: int64, the client's send time on its clock
CLOCK = "servescope.clock"  # response: string, clock_id() of the server
WORKER = "servescope.worker"  # response: int64, the worker process (its pid)
BATCH_SIZE = "servescope.batch_size"  # response: int64, samples in the batch this request ran in
PREFIX = "servescope.t."  # response: int64 per stamp, PREFIX + name

# In the order they happen (docs/analysis.md, "The request timeline"):
STAMPS = (
    "handler",  # the first Python code of the front end that sees the call
    "admitted",  # past admission (in-flight bound, restrictions)
    "decoded",  # the request's tensors decoded and checked
    "enqueued",  # in the model's batcher queue
    "window_open",  # the batcher had a free slot and began collecting the batch this request ran in
    "batch_start",  # that batch closed and began executing (inputs joined)
    "compute_start",  # the model's run began on the compute thread
    "compute_end",  # the model's run returned on the compute thread
    "resumed",  # the request's code ran again on the event loop
    "encoded",  # outputs encoded into the response
    "returned",  # the response handed back to the transport
)


@dataclass(frozen=True)
class Part:
    name: str
    start: str  # stamp
    end: str  # stamp
    label: str


SERVER_PARTS = (
    Part("admission", "handler", "admitted", "front end to admission"),
    Part("decode", "admitted", "decoded", "decode"),
    Part("submit", "decoded", "enqueued", "to the queue"),
    Part("queue", "enqueued", "window_open", "queue"),
    Part("window", "window_open", "batch_start", "batching window"),
    Part("handoff", "batch_start", "compute_start", "hand-off to the compute thread"),
    Part("compute", "compute_start", "compute_end", "compute"),
    Part("return_hop", "compute_end", "resumed", "back to the event loop"),
    Part("encode", "resumed", "encoded", "encode"),
    Part("respond", "encoded", "returned", "response built"),
)


@functools.cache
def clock_id() -> str:
    """This host's CLOCK_MONOTONIC, named by its boot id (equal ids: the same clock)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        return "monotonic@unknown"
    return f"monotonic@{boot}"


def now_ns() -> int:
    return time.monotonic_ns()


@dataclass(frozen=True)
class ServerStamps:
    """One response's stamps, checked: every one present, non-negative and in order."""

    clock: str
    ns: dict[str, int]
    worker: int | None
    batch_size: int | None

    def part_ns(self, part: Part) -> int:
        return self.ns[part.end] - self.ns[part.start]

    def parts_ns(self) -> dict[str, int]:
        return {part.name: self.part_ns(part) for part in SERVER_PARTS}


def parse_stamps(params: Mapping[str, object]) -> tuple[ServerStamps | None, str]:
    """The stamps in a response's parameters (plain values: int, str), or None and why not.

    Never raises: a response from another server, or one with garbage stamps, is counted by the caller
    as unstamped; "" as the reason means the response carried no stamps at all."""
    if not any(key.startswith(PREFIX) for key in params):
        return None, ""
    ns: dict[str, int] = {}
    for name in STAMPS:
        value = params.get(PREFIX + name)
        if type(value) is not int or value < 0:
            return None, f"stamp {name!r} missing or not a non-negative integer"
        ns[name] = value
    ordered = [ns[name] for name in STAMPS]
    if any(later < earlier for earlier, later in itertools.pairwise(ordered)):
        return None, "stamps out of order"
    clock = params.get(CLOCK)
    worker = params.get(WORKER)
    batch = params.get(BATCH_SIZE)
    return (
        ServerStamps(
            clock=clock if isinstance(clock, str) else "",
            ns=ns,
            worker=worker if type(worker) is int else None,
            batch_size=batch if type(batch) is int else None,
        ),
        "",
    )
