"""One measured step: start a load engine, measure in windows until stable or out of time, collect everything.

The driver stays gevent-free: the engine (engine.py; Locust: locust_engine.py) runs its generator in
subprocesses and writes per-request samples to files (samples.py) that this module reads. Timeline of a
step with an engine that streams its samples:

    start the engine -> first sample seen -> warm-up (warmup_s) -> window 1, 2, ... (window_s each)
    -> stop as soon as the last `stable_windows` windows agree on throughput and p99 within
       stability_percent of their mean (perf_analyzer's rule), or when max_step_s is reached

An engine whose samples arrive at the end: warm-up from its start, every window up to max_step_s, then
the windows are counted from the samples and the first stable run of them is the step's interval.

The step's figures come from `stable_windows` windows only: /metrics is scraped and the CPU times of
the generator and server processes are read at every window boundary, so client counts, server deltas
and CPU use cover the same interval.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from loadtest.accounting import Accounting
from loadtest.engine import Engine, EngineRun, StepLoad
from loadtest.samples import SampleReader
from loadtest.step_figures import StepOutcome, Watch, count_window, first_stable_end, is_stable, outcome

__all__ = ["StepFailed", "StepOutcome", "StepTiming", "is_stable", "run_ramp", "run_step"]

FIRST_SAMPLE_TIMEOUT_S = 60.0
READ_LAG_S = 0.3  # a streaming engine's samples reach disk within this (Locust flushes every 0.2 s)


@dataclass
class StepTiming:
    warmup_s: float
    window_s: float
    max_step_s: float  # measured time at most (warm-up excluded)
    stability_percent: float = 10.0
    stable_windows: int = 3
    fixed: bool = False  # measure exactly stable_windows windows (servescope load), no stability stop

    def max_windows(self) -> int:
        if self.fixed:
            return self.stable_windows
        return max(self.stable_windows, math.floor(self.max_step_s / self.window_s + 1e-9))


class StepFailed(RuntimeError):
    """The load generator could not run the step at all (it did not start or sent nothing)."""


def run_step(
    engine: Engine,
    load: StepLoad,
    timing: StepTiming,
    *,
    metrics_url: str | None = None,
    server_pid: int | None = None,
    progress: Callable[[str], None] = print,
    label: str = "",
) -> StepOutcome:
    """Run one step (one load level) and measure it (see the module docstring).

    Raises:
        StepFailed: the generator exited before sending a request, or sent none within a minute.
    """
    (outcome_,) = run_ramp(engine, load, timing, metrics_url=metrics_url, server_pid=server_pid,
                           progress=progress, labels=[label or load.report_prefix])  # fmt: skip
    return outcome_


def run_ramp(
    engine: Engine,
    load: StepLoad,
    timing: StepTiming,
    *,
    metrics_url: str | None = None,
    server_pid: int | None = None,
    progress: Callable[[str], None] = print,
    labels: list[str] | None = None,
) -> list[StepOutcome]:
    """One generator run over load.levels, one outcome per level (a ramp when there are several).

    Each level of a ramp lasts warm-up + the longest measurement + one second of slack, so the level's
    windows never straddle a change of load.
    """
    phase_s = timing.warmup_s + timing.max_windows() * timing.window_s + 1.0
    if len(load.levels) > 1:
        load = dataclasses.replace(load, ramp_phase_s=phase_s)
    run = engine.start(load, phase_s * len(load.levels))
    reader = SampleReader(load.samples_dir)
    outcomes: list[StepOutcome] = []
    try:
        first_s = _first_sample(run, reader)
        watches: list[Watch] = []
        for i in range(len(load.levels)):
            label = labels[i] if labels else f"{load.report_prefix} level {i + 1}/{len(load.levels)}"
            watch = _watch(
                run, reader, load, timing, metrics_url, server_pid, progress, label, first_s + i * phase_s
            )
            if run.streams_samples:
                reader.poll()
                outcomes.append(outcome(watch, reader.all(), timing.stable_windows))
            else:
                watches.append(watch)
            if not run.alive():
                break
        if watches:
            outcomes += _count_at_the_end(run, reader, watches, timing, progress)
    finally:
        run.finish()
    return outcomes


def _first_sample(run: EngineRun, reader: SampleReader) -> float:
    """Wait for the first recorded request; its completion time starts the warm-up (samples at the
    end: the engine's start does)."""
    launched_s = time.time()
    if not run.streams_samples:
        return launched_s
    reader.poll()
    while not reader.all().size:
        if not run.alive():
            raise StepFailed(
                f"the load generator exited (code {run.exit_code()}) before any request: {run.log_tail()}"
            )
        if time.time() - launched_s > FIRST_SAMPLE_TIMEOUT_S:
            raise StepFailed(f"no request was sent within {FIRST_SAMPLE_TIMEOUT_S:.0f} s: {run.log_tail()}")
        time.sleep(0.1)
        reader.poll()
    return float(reader.all()["end_s"].min())


def _sleep_until(deadline_s: float, run: EngineRun) -> None:
    while True:
        left = deadline_s - time.time()
        if left <= 0 or not run.alive():
            return
        time.sleep(min(left, 0.2))


def _watch(
    run: EngineRun,
    reader: SampleReader,
    load: StepLoad,
    timing: StepTiming,
    metrics_url: str | None,
    server_pid: int | None,
    progress: Callable[[str], None],
    label: str,
    first_s: float,
) -> Watch:
    """Warm up from first_s, then take every window boundary (see the module docstring)."""
    watch = Watch(label, first_s, load, Accounting(run.pids(), server_pid), metrics_url, run.status())
    planned_start_s = first_s + timing.warmup_s
    _sleep_until(planned_start_s, run)
    watch.mark()
    watch.status_before = run.status()
    last_print_s = time.time()
    for k in range(1, timing.max_windows() + 1):
        boundary = planned_start_s + k * timing.window_s
        while time.time() < boundary and run.alive():
            _sleep_until(min(boundary, time.time() + 10.0), run)
            if time.time() - last_print_s >= 10.0 and time.time() < boundary:
                progress(f"{label}: window {k} running, {reader.files} generator process(es)")
                last_print_s = time.time()
        if not run.alive():
            watch.notes.append(f"load generator exited early (code {run.exit_code()})")
            break
        watch.mark()
        watch.marked_windows = k
        last_print_s = time.time()
        if not run.streams_samples:
            progress(f"{label}: window {k} measured (the engine reports its samples when it ends)")
            continue
        time.sleep(READ_LAG_S)
        reader.poll()
        count_window(watch, reader.all(), k, progress)
        last_print_s = time.time()
        if not timing.fixed and is_stable(watch.windows, timing.stable_windows, timing.stability_percent):
            watch.stable = True
            break
    if timing.fixed:
        watch.stable = is_stable(watch.windows, timing.stable_windows, timing.stability_percent)
    if len(watch.times_s) == 1:
        watch.mark()
        watch.notes.append("no full window was measured")
    watch.status_after = run.status()
    return watch


def _count_at_the_end(
    run: EngineRun, reader: SampleReader, watches: list[Watch], timing: StepTiming,
    progress: Callable[[str], None],
) -> list[StepOutcome]:  # fmt: skip
    """Samples at the end: finish the engine, then count every window and choose each step's interval."""
    run.finish()
    reader.poll()
    samples = reader.all()
    if not samples.size and run.exit_code():
        raise StepFailed(
            f"the load generator exited (code {run.exit_code()}) with no request: {run.log_tail()}"
        )
    status = run.status()
    outcomes = []
    for watch in watches:
        watch.status_after = status
        for k in range(1, watch.marked_windows + 1):
            count_window(watch, samples, k, progress)
        end = first_stable_end(watch.windows, timing.stable_windows, timing.stability_percent)
        watch.stable, watch.end = end is not None, end
        outcomes.append(outcome(watch, samples, timing.stable_windows))
    return outcomes
