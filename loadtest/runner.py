"""One measured step: run Locust, measure in windows until stable or out of time, collect everything.

The driver stays gevent-free: Locust runs in subprocesses (locust_run.py) and streams per-request
samples to files (samples.py) that this module reads while the step runs. Timeline of a step:

    launch Locust -> first sample seen -> warm-up (warmup_s) -> window 1, 2, ... (window_s each)
    -> stop as soon as the last `stable_windows` windows agree on throughput and p99 within
       stability_percent of their mean (perf_analyzer's rule), or when max_step_s is reached

The step's figures come from the last `stable_windows` windows only: /metrics is scraped and the CPU
times of the generator and server processes are read at every window boundary, so client counts,
server deltas and CPU use cover the same interval.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest import scrape, server_info
from loadtest.accounting import Accounting
from loadtest.locust_run import LocustRun, LocustSettings
from loadtest.samples import SampleReader, Tally, tally
from servescope.results import (
    GENERATOR_SATURATED_PERCENT,
    ClientTiming,
    CpuUsage,
    GpuUsage,
    LatencySummary,
    ServerDeltas,
    Window,
    is_loopback,
)

FIRST_SAMPLE_TIMEOUT_S = 60.0
LATE_SHARE_SATURATED = 0.01  # more open-loop arrivals than this share sent late: the generator fell behind
READ_LAG_S = 0.3  # samples reach disk within the locustfile's flush interval (0.2 s)


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


@dataclass
class StepOutcome:
    """Everything measured in one step, before it becomes a StepRecord."""

    started_at_s: float
    measured: Tally
    windows: list[Window]
    stable: bool
    server: ServerDeltas | None
    cpu: CpuUsage
    gpu: GpuUsage | None
    notes: list[str] = field(default_factory=list)
    client: ClientTiming | None = None
    compute_by_batch_size: dict[str, list[float]] | None = None

    def latency(self) -> LatencySummary | None:
        lat = self.measured.ok_latencies_s
        if not lat.size:
            return None
        p50, p90, p95, p99, p999 = np.percentile(lat, [50, 90, 95, 99, 99.9])
        return LatencySummary(
            p50=float(p50),
            p90=float(p90),
            p95=float(p95),
            p99=float(p99),
            p999=float(p999),
            max=float(lat.max()),
            mean=float(lat.mean()),
        )


class StepFailed(RuntimeError):
    """The load generator could not run the step at all (Locust did not start or sent nothing)."""


def is_stable(windows: list[Window], count: int, percent: float) -> bool:
    """The last `count` windows all lie within `percent` of their mean, for throughput and for p99."""
    if len(windows) < count:
        return False
    last = windows[-count:]
    if any(w.completed == 0 or w.p99_s is None for w in last):
        return False
    for values in ([w.throughput_rps for w in last], [w.p99_s for w in last]):
        mean = sum(values) / len(values)  # type: ignore[arg-type]
        if mean <= 0 or any(abs(v - mean) > mean * percent / 100.0 for v in values):  # type: ignore[operator]
            return False
    return True


def _sleep_until(deadline_s: float, locust: LocustRun) -> None:
    while True:
        left = deadline_s - time.time()
        if left <= 0 or not locust.alive():
            return
        time.sleep(min(left, 0.2))


def _boundary(metrics_url: str | None) -> tuple[float, scrape.Snapshot | None]:
    """Scrape now; the window boundary is the middle of the scrape, so both sides count the same time."""
    before_s = time.time()
    snapshot = scrape.try_scrape(metrics_url)
    return (before_s + time.time()) / 2.0, snapshot


def _batch_statistics(settings: LocustSettings) -> dict[int, tuple[int, int]] | None:
    """The server's per-batch-size compute so far (ModelStatistics), when it answers."""
    if not settings.target:
        return None
    return server_info.batch_statistics(settings.target, settings.model)


def _window(t: Tally) -> Window:
    return Window(
        duration_s=t.duration_s,
        completed=t.completed,
        throughput_rps=t.throughput_rps,
        p99_s=t.percentile_s(99),
    )


def _generator_status(samples_dir: Path, start_s: float, end_s: float) -> dict[str, Any]:
    status: dict[str, Any] = {
        "cpu_warning": False, "late": 0, "dropped": 0, "setup_errors": set(), "request_bytes": None,
    }  # fmt: skip
    for path in samples_dir.glob("status-*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if any(start_s <= t <= end_s + 10.0 for t in data.get("cpu_warning_times", [])):
            status["cpu_warning"] = True
        status["late"] += int(data.get("late", 0))
        status["request_bytes"] = data.get("request_bytes") or status["request_bytes"]
        status["dropped"] += int(data.get("dropped", 0))
        if data.get("setup_error"):
            status["setup_errors"].add(data["setup_error"])
    return status


def _launch(
    settings: LocustSettings, out_dir: Path, prefix: str, run_time_s: float
) -> tuple[LocustRun, SampleReader]:
    """Start Locust on an empty samples folder, and the reader of what it records."""
    if settings.samples_dir.exists():
        shutil.rmtree(settings.samples_dir)
    return LocustRun(settings, out_dir, prefix, run_time_s), SampleReader(settings.samples_dir)


def run_step(
    settings: LocustSettings,
    timing: StepTiming,
    out_dir: Path,
    prefix: str,
    *,
    metrics_url: str | None = None,
    server_pid: int | None = None,
    progress: Callable[[str], None] = print,
    label: str = "",
) -> StepOutcome:
    """Run one step and measure it (see the module docstring). Locust's reports land in out_dir/prefix*.

    Raises:
        StepFailed: Locust exited before sending a request, or sent none within a minute.
    """
    run_time_s = FIRST_SAMPLE_TIMEOUT_S + timing.warmup_s + timing.max_windows() * timing.window_s + 30.0
    locust, reader = _launch(settings, out_dir, prefix, run_time_s)
    try:
        first_s = _first_sample(locust, reader)
        return _measure(
            locust, reader, settings, timing, metrics_url, server_pid, progress, label or prefix, first_s
        )
    finally:
        locust.stop()


def ramp_schedule(levels: list[tuple[int | None, float | None]], phase_s: float) -> list[dict[str, float]]:
    """The locustfile's ramp: level i (users, rate_rps) holds until (i + 1) * phase_s from the start."""
    return [
        {"until_s": (i + 1) * phase_s, "users": users or 1, "rate_rps": rate or 0.0}
        for i, (users, rate) in enumerate(levels)
    ]


def run_ramp(
    settings: LocustSettings,
    levels: list[tuple[int | None, float | None]],
    timing: StepTiming,
    out_dir: Path,
    prefix: str,
    *,
    metrics_url: str | None = None,
    server_pid: int | None = None,
    progress: Callable[[str], None] = print,
    labels: list[str] | None = None,
) -> list[StepOutcome]:
    """One Locust run whose load rises in steps (shape_steps.py / open-loop ramp); one outcome per level.

    Each level lasts warm-up + a fixed measurement (timing.fixed) + one second of slack, so the level's
    windows never straddle a change of load.
    """
    phase_s = timing.warmup_s + timing.max_windows() * timing.window_s + 1.0
    settings.ramp = ramp_schedule(levels, phase_s)
    locust, reader = _launch(settings, out_dir, prefix, FIRST_SAMPLE_TIMEOUT_S + phase_s * len(levels) + 30.0)
    outcomes: list[StepOutcome] = []
    try:
        first_s = _first_sample(locust, reader)
        for i in range(len(levels)):
            label = labels[i] if labels else f"{prefix} level {i + 1}/{len(levels)}"
            outcome = _measure(
                locust,
                reader,
                settings,
                timing,
                metrics_url,
                server_pid,
                progress,
                label,
                first_s + i * phase_s,
            )
            outcomes.append(outcome)
            if not locust.alive():
                break
    finally:
        locust.stop()
    return outcomes


def _first_sample(locust: LocustRun, reader: SampleReader) -> float:
    """Wait for the first recorded request; its completion time starts the warm-up."""
    launched_s = time.time()
    reader.poll()
    while not reader.all().size:
        if not locust.alive():
            raise StepFailed(
                f"Locust exited (code {locust.main.returncode}) before any request: {locust.log_tail()}"
            )
        if time.time() - launched_s > FIRST_SAMPLE_TIMEOUT_S:
            raise StepFailed(
                f"no request was sent within {FIRST_SAMPLE_TIMEOUT_S:.0f} s: {locust.log_tail()}"
            )
        time.sleep(0.1)
        reader.poll()
    return float(reader.all()["end_s"].min())


def _measure(
    locust: LocustRun,
    reader: SampleReader,
    settings: LocustSettings,
    timing: StepTiming,
    metrics_url: str | None,
    server_pid: int | None,
    progress: Callable[[str], None],
    label: str,
    first_s: float,
) -> StepOutcome:
    """Warm up from first_s, then measure windows (see the module docstring)."""
    notes: list[str] = []
    accounting = Accounting([p.pid for p in locust.processes], server_pid)
    planned_start_s = first_s + timing.warmup_s
    _sleep_until(planned_start_s, locust)
    boundary_s, snapshot = _boundary(metrics_url)
    boundaries = [boundary_s]
    snapshots = [snapshot]
    readings = [accounting.read()]
    batch_stats = [_batch_statistics(settings)]
    status_before = _generator_status(settings.samples_dir, first_s, first_s)
    windows: list[Window] = []
    stable = False
    last_print_s = time.time()
    for k in range(1, timing.max_windows() + 1):
        boundary = planned_start_s + k * timing.window_s
        while time.time() < boundary and locust.alive():
            _sleep_until(min(boundary, time.time() + 10.0), locust)
            if time.time() - last_print_s >= 10.0 and time.time() < boundary:
                progress(f"{label}: window {k} running, {reader.files} generator process(es)")
                last_print_s = time.time()
        if not locust.alive():
            notes.append(f"load generator exited early (code {locust.main.returncode})")
            break
        boundary_s, snapshot = _boundary(metrics_url)
        boundaries.append(boundary_s)
        snapshots.append(snapshot)
        readings.append(accounting.read())
        batch_stats.append(_batch_statistics(settings))
        time.sleep(READ_LAG_S)
        reader.poll()
        counted = tally(reader.all(), boundaries[-2], boundaries[-1])
        window = _window(counted)
        windows.append(window)
        p99 = f"{window.p99_s * 1e3:.1f} ms" if window.p99_s is not None else "n/a"
        errors = counted.errors_by_code
        progress(
            f"{label}: window {k}: {window.throughput_rps:.1f} req/s, p99 {p99}"
            + (f", errors {errors}" if errors else "")
        )
        last_print_s = time.time()
        if not timing.fixed and is_stable(windows, timing.stable_windows, timing.stability_percent):
            stable = True
            break
    if timing.fixed:
        stable = is_stable(windows, timing.stable_windows, timing.stability_percent)

    used = min(timing.stable_windows, len(windows))
    if used == 0:
        boundary_s, snapshot = _boundary(metrics_url)
        boundaries.append(boundary_s)
        snapshots.append(snapshot)
        readings.append(accounting.read())
        batch_stats.append(_batch_statistics(settings))
        used = 1
        notes.append("no full window was measured")
    start_i, end_i = len(boundaries) - 1 - used, len(boundaries) - 1
    start_s, end_s = boundaries[start_i], boundaries[end_i]
    reader.poll()
    measured = tally(reader.all(), start_s, end_s)
    duration_s = end_s - start_s

    server: ServerDeltas | None = None
    before, after = snapshots[start_i], snapshots[end_i]
    if before is not None and after is not None:
        server = scrape.server_deltas(before, after, settings.model)
    elif metrics_url:
        notes.append(f"could not scrape {metrics_url} at both ends of the measured interval")

    usage = accounting.usage(readings[start_i], readings[end_i])
    server_cores = usage.server_cores
    if server_cores is None and before is not None and after is not None:
        b, a = scrape.process_cpu_seconds(before), scrape.process_cpu_seconds(after)
        if a is not None and b is not None and duration_s > 0:
            server_cores = (a - b) / duration_s
    busiest = usage.generator_max_process_percent
    other_cores = usage.other_cores
    # A server this driver did not start, on this machine: its CPU (from its metrics) is not "other".
    local_target = is_loopback(settings.target)
    if usage.server_cores is None and server_cores is not None and other_cores is not None and local_target:
        other_cores = max(0.0, other_cores - server_cores)

    status = _generator_status(settings.samples_dir, start_s, end_s)
    status["late"] -= status_before["late"]
    status["dropped"] -= status_before["dropped"]
    for message in sorted(status["setup_errors"]):
        notes.append(message)
    arrivals = measured.completed + sum(measured.errors_by_code.values())
    late_share = status["late"] / arrivals if arrivals else 0.0
    busy = busiest is not None and busiest >= GENERATOR_SATURATED_PERCENT
    saturated = bool(status["cpu_warning"] or busy or late_share > LATE_SHARE_SATURATED)
    if status["late"]:
        notes.append(f"{status['late']} open-loop arrivals were sent late (generator behind schedule)")
    if status["dropped"]:
        notes.append(f"{status['dropped']} open-loop arrivals were dropped at the in-flight cap")
    cpu = CpuUsage(
        server_cores=server_cores,
        generator_cores=usage.generator_cores,
        generator_max_process_percent=busiest,
        generator_saturated=saturated,
        machine_cores=os.cpu_count(),
        server_available_cores=accounting.server_available_cores,
        generator_available_cores=accounting.generator_available_cores,
        other_cores=other_cores,
        server_loop_cores=usage.server_loop_cores,
        server_busiest_thread_cores=usage.server_busiest_thread_cores,
        server_loop_wait_share=usage.server_loop_wait_share,
        generator_wait_share=usage.generator_wait_share,
    )
    delays = measured.delays_s
    client = ClientTiming(
        delay_mean_s=float(delays.mean()) if delays.size else 0.0,
        delay_p99_s=float(np.percentile(delays, 99)) if delays.size else 0.0,
        late_arrivals=int(status["late"]),
        dropped_arrivals=int(status["dropped"]),
        request_bytes=status["request_bytes"],
    )
    gpu = scrape.gpu_usage([s for s in snapshots[start_i : end_i + 1] if s is not None])
    return StepOutcome(
        started_at_s=first_s,
        measured=measured,
        windows=windows,
        stable=stable,
        server=server,
        cpu=cpu,
        gpu=gpu,
        notes=notes,
        client=client,
        compute_by_batch_size=server_info.batch_statistics_delta(batch_stats[start_i], batch_stats[end_i]),
    )
