"""The load-engine seam: the step runner (runner.py) asks an engine to put one step's load on a server.

An engine is an object with a `name` and `start(load, run_time_s) -> EngineRun`. It reads everything it
needs from the StepLoad (target, model, load levels, client batch, connection, payloads, run time), starts
its generator processes, and writes one record per request (loadtest/samples.py: SAMPLE_DTYPE records in
files matching SAMPLE_GLOB) into `load.samples_dir`. The runner does everything else the same way for
every engine: warm-up, windows, stability, the /metrics scrapes and the CPU accounting at each window
boundary, percentiles from every request, the step record.

How samples arrive is the engine's to say, with `EngineRun.streams_samples`:

- True (streamed, Locust): samples reach samples_dir while the step runs (within READ_LAG_S). The runner
  waits for the first sample to start the warm-up, counts each window as it closes, prints it, and stops
  the step as soon as the last windows are stable.
- False (at the end, perf_analyzer: its per-request export is written when it exits): samples appear only
  once `finish()` has returned. The runner starts the warm-up when the engine starts, keeps every window
  boundary live (scrapes and CPU readings happen at the boundaries, as for a streaming engine), measures
  every window up to max_duration_s, then calls `finish()` and counts the windows from the samples; the
  step's figures come from the first run of `stable_windows` stable windows (or the last ones).

The engine also names its generator processes (`pids()`): the accounting (accounting.py) reads their CPU
time, and their children's, at every boundary, so the generator's CPU is recorded whatever the engine.

A new engine: one module holding the engine object (`ENGINE = MyEngine()`), and its line in ENGINES
below; then `load.engine: NAME` in a campaign file and `servescope load --engine NAME` choose it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from loadtest.connection import Connection
from servescope.echo import shown

# name -> the module whose ENGINE attribute is the engine (imported only when a step asks for it).
ENGINES: dict[str, str] = {
    "locust": "loadtest.locust_engine",
    "perf_analyzer": "loadtest.perf_analyzer_engine",
}
# Engines that run one load level per generator run: a ramp (load.ramp, --ramp-steps) is refused for them.
ONE_LEVEL_ENGINES = ("perf_analyzer",)
DEFAULT_ENGINE = "locust"


class UnknownEngine(ValueError):
    """The engine named is not registered; the message names the value and the choices."""


@dataclass(frozen=True)
class LoadLevel:
    """How hard: closed loop (users, each waiting for its answer) or open loop (a request rate)."""

    mode: str  # "closed" or "open"
    users: int | None = None
    rate_rps: float | None = None

    def label(self) -> str:
        return f"{self.users} users" if self.mode == "closed" else f"{self.rate_rps:.4g} req/s"


@dataclass(frozen=True)
class StepLoad:
    """One generator run: what to send, where, how hard and how long (a ramp has several levels)."""

    target: str  # HOST:PORT for connection.protocol
    model: str
    levels: list[LoadLevel]  # one level; a ramp: each held for ramp_phase_s, in order
    samples_dir: Path  # where the engine writes its SAMPLE_DTYPE files
    reports_dir: Path  # where the engine keeps its own reports and logs
    report_prefix: str  # the engine's report file names start with this
    arrival: str = "poisson"  # open loop: "constant" or "poisson"
    batch_size: int = 1
    connection: Connection = field(default_factory=Connection)  # protocol, streaming, TLS, version, headers
    input_data: str | None = None  # perf_analyzer JSON input file: the payloads
    payload: str = "auto"  # generated payloads when no input_data (loadtest/payload.py)
    value_ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    seed: int = 0
    timeout_s: float = 30.0  # per request
    max_inflight: int = 1000  # open loop: outstanding requests per generator process before dropping
    connections: int = 8  # connections per generator process
    workers: int = 0  # extra generator processes (0: one process)
    ramp_phase_s: float | None = None  # a ramp: seconds each level holds, from the engine's start

    @property
    def level(self) -> LoadLevel:
        """The level a one-level run holds (a ramp's last, highest level)."""
        return self.levels[-1]


@dataclass
class GeneratorStatus:
    """What the generator reports about itself, counted from its start."""

    late: int = 0  # open-loop arrivals sent behind schedule
    dropped: int = 0  # open-loop arrivals not sent (in-flight cap)
    cpu_warning_times: list[float] = field(default_factory=list)  # wall-clock times it said it was busy
    setup_errors: set[str] = field(default_factory=set)  # messages (e.g. a model it could not ask about)
    request_bytes: int | None = None  # bytes of one request body, where known


class EngineRun(Protocol):
    """A running generator (see the module docstring)."""

    streams_samples: bool

    def pids(self) -> list[int]:
        """The generator's processes, for the CPU accounting (their children are counted too)."""
        ...

    def alive(self) -> bool: ...

    def exit_code(self) -> int | None: ...

    def status(self) -> GeneratorStatus:
        """What the generator says about itself so far (an end-only engine: after finish())."""
        ...

    def log_tail(self, lines: int = 5) -> str:
        """Its last log lines, for the message when it fails."""
        ...

    def finish(self) -> None:
        """End the load and return once every sample is in samples_dir; safe to call again."""
        ...


class Engine(Protocol):
    name: str

    def start(self, load: StepLoad, run_time_s: float) -> EngineRun:
        """Start the load on an empty load.samples_dir. run_time_s is the load the step needs once it is
        on (every level's warm-up and windows, a second of slack each). A streaming engine may run
        longer (finish() ends it); an end-only engine should end by itself then, as its samples come
        when it ends (finish() waits for that)."""
        ...


def check_engine(name: str, where: str = "load.engine") -> str:
    if name not in ENGINES:
        known = ", ".join(ENGINES)
        raise UnknownEngine(f"{where}: {shown(name)} is not a known load engine (known: {known})")
    return name


def ramp_refusal(name: str, where: str) -> str | None:
    """Why engine `name` cannot run a ramp (one line naming the engine and the option), or None."""
    if name not in ONE_LEVEL_ENGINES:
        return None
    return (
        f"{where}: the {name} engine runs one load level per run and cannot hold a ramp's timed levels "
        "in one run; use the locust engine for a ramp, or drop the ramp (one step per level)"
    )


def engine(name: str) -> Engine:
    """The registered engine called `name`."""
    module = importlib.import_module(ENGINES[check_engine(name)])
    return module.ENGINE
