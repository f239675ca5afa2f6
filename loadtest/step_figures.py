"""A step's figures from what was taken at its window boundaries (runner.py) and the engine's samples.

At every boundary the runner scrapes /metrics, reads the CPU accounting and asks the server's
per-batch-size statistics (Watch.mark); the windows between boundaries are counted from the samples,
as they close (a streaming engine) or once the engine has finished (samples at the end). `outcome`
turns the chosen interval into a StepOutcome.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtest import scrape, server_info
from loadtest.accounting import Accounting, Reading
from loadtest.engine import GeneratorStatus, StepLoad
from loadtest.samples import Tally, tally
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

LATE_SHARE_SATURATED = 0.01  # more open-loop arrivals than this share sent late: the generator fell behind


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


@dataclass
class Watch:
    """One level's boundaries and what was read at each, and the windows counted between them."""

    label: str
    first_s: float  # the first sample (or the engine's start): the warm-up starts here
    load: StepLoad
    accounting: Accounting
    metrics_url: str | None
    status_before: GeneratorStatus
    times_s: list[float] = field(default_factory=list)
    snapshots: list[scrape.Snapshot | None] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    batch_stats: list[Any] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    marked_windows: int = 0  # windows whose closing boundary was taken (counted or not yet)
    stable: bool = False
    end: int | None = None  # the boundary that ends the step's interval (None: the last)
    notes: list[str] = field(default_factory=list)
    status_after: GeneratorStatus | None = None

    def mark(self) -> None:
        """A boundary: scrape now (its middle is the boundary, so both sides count the same time)."""
        before_s = time.time()
        snapshot = scrape.try_scrape(self.metrics_url)
        self.times_s.append((before_s + time.time()) / 2.0)
        self.snapshots.append(snapshot)
        self.readings.append(self.accounting.read())
        target = self.load.target
        self.batch_stats.append(server_info.batch_statistics(target, self.load.model) if target else None)


def count_window(watch: Watch, samples: np.ndarray, k: int, progress: Callable[[str], None]) -> Window:
    """Window k (from 1) between boundaries k - 1 and k, counted and printed."""
    counted = tally(samples, watch.times_s[k - 1], watch.times_s[k])
    window = Window(
        duration_s=counted.duration_s,
        completed=counted.completed,
        throughput_rps=counted.throughput_rps,
        p99_s=counted.percentile_s(99),
    )
    watch.windows.append(window)
    p99 = f"{window.p99_s * 1e3:.1f} ms" if window.p99_s is not None else "n/a"
    errors = counted.errors_by_code
    progress(
        f"{watch.label}: window {k}: {window.throughput_rps:.1f} req/s, p99 {p99}"
        + (f", errors {errors}" if errors else "")
    )
    return window


def first_stable_end(windows: list[Window], count: int, percent: float) -> int | None:
    """The first k whose last `count` windows are stable (samples at the end: the step's interval)."""
    for k in range(count, len(windows) + 1):
        if is_stable(windows[:k], count, percent):
            return k
    return None


def outcome(watch: Watch, samples: np.ndarray, stable_windows: int) -> StepOutcome:
    """The step's figures over the `stable_windows` windows that end at watch.end (or the last)."""
    end_i = len(watch.times_s) - 1 if watch.end is None else watch.end
    used = min(stable_windows, end_i)
    start_i = end_i - used
    start_s, end_s = watch.times_s[start_i], watch.times_s[end_i]
    measured = tally(samples, start_s, end_s)
    notes = list(watch.notes)
    server: ServerDeltas | None = None
    before, after = watch.snapshots[start_i], watch.snapshots[end_i]
    if before is not None and after is not None:
        server = scrape.server_deltas(before, after, watch.load.model)
    elif watch.metrics_url:
        notes.append(f"could not scrape {watch.metrics_url} at both ends of the measured interval")
    status = _interval_status(watch, start_s, end_s)
    notes += sorted(status.setup_errors)
    arrivals = measured.completed + sum(measured.errors_by_code.values())
    if status.late:
        notes.append(f"{status.late} open-loop arrivals were sent late (generator behind schedule)")
    if status.dropped:
        notes.append(f"{status.dropped} open-loop arrivals were dropped at the in-flight cap")
    cpu = _cpu(watch, start_i, end_i, status, status.late / arrivals if arrivals else 0.0)
    delays = measured.delays_s
    client = ClientTiming(
        delay_mean_s=float(delays.mean()) if delays.size else 0.0,
        delay_p99_s=float(np.percentile(delays, 99)) if delays.size else 0.0,
        late_arrivals=status.late,
        dropped_arrivals=status.dropped,
        request_bytes=status.request_bytes,
    )
    return StepOutcome(
        started_at_s=watch.first_s,
        measured=measured,
        windows=watch.windows,
        stable=watch.stable,
        server=server,
        cpu=cpu,
        gpu=scrape.gpu_usage([s for s in watch.snapshots[start_i : end_i + 1] if s is not None]),
        notes=notes,
        client=client,
        compute_by_batch_size=server_info.batch_statistics_delta(
            watch.batch_stats[start_i], watch.batch_stats[end_i]
        ),
    )


def _interval_status(watch: Watch, start_s: float, end_s: float) -> GeneratorStatus:
    """The generator's counts over the step (its counters at the end less those at the warm-up's end)."""
    after = watch.status_after or watch.status_before
    before = watch.status_before
    return GeneratorStatus(
        late=after.late - before.late,
        dropped=after.dropped - before.dropped,
        cpu_warning_times=[t for t in after.cpu_warning_times if start_s <= t <= end_s + 10.0],
        setup_errors=after.setup_errors,
        request_bytes=after.request_bytes,
    )


def _cpu(watch: Watch, start_i: int, end_i: int, status: GeneratorStatus, late_share: float) -> CpuUsage:
    accounting = watch.accounting
    usage = accounting.usage(watch.readings[start_i], watch.readings[end_i])
    duration_s = watch.times_s[end_i] - watch.times_s[start_i]
    before, after = watch.snapshots[start_i], watch.snapshots[end_i]
    server_cores = usage.server_cores
    if server_cores is None and before is not None and after is not None:
        b, a = scrape.process_cpu_seconds(before), scrape.process_cpu_seconds(after)
        if a is not None and b is not None and duration_s > 0:
            server_cores = (a - b) / duration_s
    busiest = usage.generator_max_process_percent
    other_cores = usage.other_cores
    # A server this driver did not start, on this machine: its CPU (from its metrics) is not "other".
    local_target = is_loopback(watch.load.target)
    if usage.server_cores is None and server_cores is not None and other_cores is not None and local_target:
        other_cores = max(0.0, other_cores - server_cores)
    busy = busiest is not None and busiest >= GENERATOR_SATURATED_PERCENT
    saturated = bool(status.cpu_warning_times or busy or late_share > LATE_SHARE_SATURATED)
    return CpuUsage(
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
