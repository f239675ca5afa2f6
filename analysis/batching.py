"""Batching: achieved batch size, the cost of a batch against its size, and the cost of the batch window.

Compute time per batch is fitted as fixed + per_sample x batch_size by least squares over the steps of
one model on one device (per-step means of compute time per batch and of batch size; a linear model
keeps means on the line, so means fit it as well as raw batches would). One instance can then execute
at most b / (fixed + per_sample x b) samples per second with batches of b: the rate grows with b towards
1 / per_sample and reaches STOP_PAYING_FRACTION (90%) of that ceiling at b = 9 x fixed / per_sample.
Beyond that batch size, larger batches add latency (compute time keeps growing linearly) for less than
10% more throughput: batching stops paying.

The batch window (max_queue_delay) adds latency at low load when requests wait for company that does not
come: the batching-delay part of the decomposition is at least BATCH_WINDOW_SHARE of the mean latency while
batches average at most LONELY_BATCH_MAX samples (per request in the batch).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from analysis.curves import series_label
from analysis.decompose import Decomposition
from analysis.steps import batch_size_mean, batching_enabled, describe_load, offered_load
from analysis.thresholds import (
    BATCH_WINDOW_SHARE,
    DELAY_WORTH_CHANGING,
    LONELY_BATCH_MAX,
    MIN_FIT_SPREAD,
    STOP_PAYING_FRACTION,
    WINDOW_OBJECTIVE_SHARE,
)
from servescope.results import StepRecord


@dataclass
class BatchFit:
    """compute_s(batch) = fixed_s + per_sample_s x batch, for one model on one device."""

    model: str
    device: str
    fixed_s: float
    per_sample_s: float
    r_squared: float | None
    points: list[tuple[int, float, float]]  # (step_index, mean batch size, mean compute s per batch)
    stop_paying_batch: float | None  # None when compute does not grow with batch size
    note: str | None = None

    def compute_s(self, batch_size: float) -> float:
        return self.fixed_s + self.per_sample_s * batch_size

    def samples_per_s(self, batch_size: float) -> float:
        """Samples per second one instance can execute with batches of this size."""
        return batch_size / self.compute_s(batch_size)


@dataclass
class DelayFinding:
    """The batch window added latency at low load for little batching."""

    series: str
    step_index: int
    offered_load: float
    load: str  # "1 user", "20 req/s"
    max_queue_delay_us: int
    batching_delay_s: float
    client_mean_s: float
    batch_size_mean: float
    suggested_delay_us: int
    adaptive_delay: bool = False  # the server skips a window no request is expected to arrive in
    users: int | None = None  # closed-loop users at the step (None: open loop)
    rate_rps: float | None = None  # open-loop arrival rate

    @property
    def share(self) -> float:
        return self.batching_delay_s / self.client_mean_s

    @property
    def skipped(self) -> bool:
        """With the adaptive delay, whether the suggested window would be skipped: the next request is
        expected after it runs out (closed loop: the users' cycle with the new window, spread over them;
        open loop: one over the rate)."""
        if not self.adaptive_delay:
            return False
        window_s = self.suggested_delay_us / 1e6
        if self.users:
            cycle_s = self.client_mean_s - self.batching_delay_s + window_s
            return cycle_s / self.users > window_s
        if self.rate_rps:
            return 1 / self.rate_rps > window_s
        return False

    @property
    def saving_s(self) -> float:
        if self.skipped:
            return self.batching_delay_s  # the window is not waited at all
        return max(self.batching_delay_s - self.suggested_delay_us / 1e6, 0.0)


@dataclass
class BatchingAnalysis:
    fits: dict[str, BatchFit] = field(default_factory=dict)  # by model
    delay_findings: list[DelayFinding] = field(default_factory=list)
    fit_notes: list[str] = field(default_factory=list)


def fit_compute(model: str, device: str, steps: list[StepRecord]) -> tuple[BatchFit | None, str | None]:
    points = []
    for step in steps:
        mean_batch = batch_size_mean(step)
        compute_s = step.server.compute_mean_s if step.server is not None else None
        if mean_batch is not None and compute_s is not None and compute_s > 0:
            points.append((step.step_index, mean_batch, compute_s))
    if len(points) < 2:
        return None, f"{model} on {device}: fewer than two steps with server batch metrics; no compute fit"
    sizes = np.array([p[1] for p in points])
    times = np.array([p[2] for p in points])
    if sizes.max() - sizes.min() < MIN_FIT_SPREAD:
        return None, (
            f"{model} on {device}: mean batch sizes span only {sizes.min():.2f}..{sizes.max():.2f}; "
            "no compute fit (batching on at higher concurrency would give one)"
        )
    per_sample_s, fixed_s = np.polyfit(sizes, times, 1)
    predicted = fixed_s + per_sample_s * sizes
    total = float(((times - times.mean()) ** 2).sum())
    r_squared = 1 - float(((times - predicted) ** 2).sum()) / total if total > 0 else None
    note = None
    if per_sample_s <= 0:
        stop = None
        note = "compute time does not grow with batch size over the measured range: batching is free there"
    elif fixed_s <= 0:
        stop = 1.0
        note = "no fixed cost per batch over the measured range: batching does not raise throughput"
    else:
        stop = STOP_PAYING_FRACTION / (1 - STOP_PAYING_FRACTION) * fixed_s / per_sample_s
    fit = BatchFit(
        model=model,
        device=device,
        fixed_s=float(fixed_s),
        per_sample_s=float(per_sample_s),
        r_squared=r_squared,
        points=points,
        stop_paying_batch=stop,
        note=note,
    )
    return fit, None


def suggest_max_batch(fit: BatchFit, objective_s: float, delay_s: float, limit: int = 1024) -> int | None:
    """The largest power of two up to the stop-paying size whose worst case fits the objective.

    Worst case for a request under load: the batch window, then a full batch ahead of it, then its own
    full batch: delay + 2 x compute(b).
    """
    ceiling = fit.stop_paying_batch if fit.stop_paying_batch is not None else limit
    best = None
    size = 1
    while size <= min(max(ceiling, 1), limit):
        if delay_s + 2 * fit.compute_s(size) <= objective_s:
            best = size
        size *= 2
    return best


def suggest_delay_us(
    fit: BatchFit | None, step: StepRecord, objective_s: float, cap_at_current: bool = True
) -> int:
    """A window of about the compute time of one request, and at most WINDOW_OBJECTIVE_SHARE of the
    latency objective: requests that arrive while a batch computes are batched anyway, so a longer
    window at low load only adds latency."""
    one_request = max(step.client_batch_size, 1)
    if fit is not None and fit.compute_s(one_request) > 0:
        one_s = fit.compute_s(one_request)
    elif step.server is not None and step.server.compute_mean_s:
        one_s = step.server.compute_mean_s
    else:
        one_s = 0.0005
    one_s = min(one_s, WINDOW_OBJECTIVE_SHARE * objective_s)
    suggested = max(100, round(one_s * 1e6 / 100.0) * 100)
    current = step.server_settings.max_queue_delay_us or 0
    return min(suggested, current) if cap_at_current else suggested


def analyze_batching(
    steps: list[StepRecord], decompositions: dict[int, Decomposition], objective_s: float
) -> BatchingAnalysis:
    result = BatchingAnalysis()
    by_model: dict[tuple[str, str], list[StepRecord]] = defaultdict(list)
    for step in steps:
        by_model[(step.model, step.server_settings.device or "unknown")].append(step)
    for (model, device), group in sorted(by_model.items()):
        fit, note = fit_compute(model, device, group)
        # One fit per model: the device with the most points wins if a campaign mixes devices.
        if fit is not None and (model not in result.fits or len(fit.points) > len(result.fits[model].points)):
            result.fits[model] = fit
        if note:
            result.fit_notes.append(note)
    by_series: dict[str, list[StepRecord]] = defaultdict(list)
    for step in steps:
        by_series[series_label(step)].append(step)
    for label, group in by_series.items():
        lowest = min(group, key=lambda s: (offered_load(s), s.step_index))
        finding = _delay_finding(
            label, lowest, decompositions[lowest.step_index], result.fits.get(lowest.model), objective_s
        )
        if finding is not None:
            result.delay_findings.append(finding)
    return result


def _delay_finding(
    label: str, step: StepRecord, parts: Decomposition, fit: BatchFit | None, objective_s: float
) -> DelayFinding | None:
    delay_us = step.server_settings.max_queue_delay_us or 0
    mean_batch = batch_size_mean(step)
    if not batching_enabled(step) or delay_us <= 0 or parts.batching_delay_s is None or mean_batch is None:
        return None
    per_request_batch = mean_batch / max(step.client_batch_size, 1)
    share = parts.batching_delay_s / parts.client_mean_s if parts.client_mean_s > 0 else 0.0
    if share < BATCH_WINDOW_SHARE or per_request_batch > LONELY_BATCH_MAX:
        return None
    suggested_us = suggest_delay_us(fit, step, objective_s)
    if suggested_us > delay_us * DELAY_WORTH_CHANGING:
        return None  # the window is already about one compute time: nothing worth changing
    return DelayFinding(
        series=label,
        step_index=step.step_index,
        offered_load=offered_load(step),
        load=describe_load(step),
        max_queue_delay_us=delay_us,
        batching_delay_s=parts.batching_delay_s,
        client_mean_s=parts.client_mean_s,
        batch_size_mean=mean_batch,
        suggested_delay_us=suggested_us,
        adaptive_delay=bool(step.server_settings.adaptive_delay),
        users=step.load.users if step.load.mode == "closed" else None,
        rate_rps=step.load.rate_rps if step.load.mode == "open" else None,
    )
