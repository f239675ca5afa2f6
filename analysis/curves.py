"""Throughput against latency, one curve per series (a model variant under one configuration).

A series is every step that differs only in offered load (users or rate): same model, client batch
size, load mode and server settings. Its points are ordered by offered load.

The knee is the last point before latency starts to grow faster than throughput: the first segment
where the relative growth of the mean latency exceeds the relative growth of throughput (and exceeds
KNEE_MIN_LATENCY_GROWTH, so that noise on a flat curve is not a knee). Beyond it, more load buys mostly
latency. The mean, not the objective's tail percentile, decides: a p99 over a few seconds jumps with one
slow request, while the mean is tied to throughput by Little's law (in a closed loop, users = throughput
x mean latency, so doubling the users doubles the mean exactly when throughput stops growing).

The best point is the highest throughput (inferences/s) among unflagged steps whose latency percentile
meets the objective.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from analysis.steps import batching_enabled, describe_load, falls_short, latency_at, offered_load
from analysis.thresholds import KNEE_MIN_LATENCY_GROWTH
from servescope.results import StepRecord

PERCENTILES = ("p50", "p90", "p95", "p99", "p999", "max", "mean")


@dataclass
class Objective:
    percentile: str  # one of PERCENTILES
    latency_s: float

    @property
    def label(self) -> str:
        return f"{self.percentile} <= {self.latency_s * 1e3:g} ms"


@dataclass
class Point:
    step_index: int
    offered_load: float  # users, or requests/s for open loop
    requests_per_s: float
    inferences_per_s: float
    latency_s: float  # at the objective's percentile
    meets_objective: bool
    trusted: bool
    mean_latency_s: float = 0.0  # the knee is found on the mean: far less noisy than a tail percentile


@dataclass
class Curve:
    series: str
    model: str
    points: list[Point]
    knee_step_index: int | None = None  # None: latency never outgrew throughput
    best_step_index: int | None = None  # None: no trusted step met the objective
    best_inferences_per_s: float | None = None
    best_requests_per_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def saturated(self) -> bool:
        return self.knee_step_index is not None


def objective_from(raw: dict) -> Objective:
    percentile = str(raw.get("percentile", "p99"))
    if percentile not in PERCENTILES:
        percentile = "p99"
    latency_s = float(raw.get("latency_s", 0.05))
    return Objective(percentile, latency_s)


def series_label(step: StepRecord) -> str:
    """The series a step belongs to, as text: model, every server setting, client batch and load mode.

    Every field of ServerSettings that is known shows (tests/analysis/test_series.py changes each one and
    checks that the label changes), so two steps differing in any setting never share a series.
    """
    settings = step.server_settings
    if not batching_enabled(step):
        batching = "batching off"
    elif settings.batching is None and settings.max_batch_size is None:
        batching = "batching unknown"  # a server that did not say (no ModelConfig)
    else:
        batching = f"batching max {settings.max_batch_size}, delay {settings.max_queue_delay_us} us"
    parts = [step.model, batching]
    if settings.preferred_batch_sizes:
        parts.append(f"preferred {'/'.join(map(str, settings.preferred_batch_sizes))}")
    if settings.max_queue_size:
        parts.append(f"queue {settings.max_queue_size}")
    if settings.adaptive_delay is False:
        parts.append("fixed delay")
    elif settings.adaptive_delay and settings.server != "servescope":
        parts.append("adaptive delay")
    if settings.intra_op_threads is not None:
        parts.append(f"{settings.intra_op_threads} thread{'s' if settings.intra_op_threads != 1 else ''}")
    if settings.instances:
        parts.append(f"{settings.instances} instance{'s' if settings.instances != 1 else ''}")
    if settings.workers:
        parts.append(f"{settings.workers} worker{'s' if settings.workers != 1 else ''}")
    if settings.device:
        parts.append(settings.device)
    if settings.server != "servescope":
        parts.append(settings.server)
    parts.append(f"client batch {step.client_batch_size}")
    parts.append("open loop" if step.load.mode == "open" else "closed loop")
    return ", ".join(parts)


def group_series(steps: list[StepRecord]) -> dict[str, list[StepRecord]]:
    """Steps by series label, each list ordered by offered load (then step index)."""
    groups: dict[str, list[StepRecord]] = defaultdict(list)
    for step in steps:
        groups[series_label(step)].append(step)
    return {
        label: sorted(group, key=lambda s: (offered_load(s), s.step_index)) for label, group in groups.items()
    }


def find_knee(points: list[Point]) -> int | None:
    for before, after in itertools.pairwise(points):
        if before.inferences_per_s <= 0 or before.mean_latency_s <= 0:
            continue
        throughput_growth = after.inferences_per_s / before.inferences_per_s - 1
        latency_growth = after.mean_latency_s / before.mean_latency_s - 1
        if latency_growth > KNEE_MIN_LATENCY_GROWTH and latency_growth > throughput_growth:
            return before.step_index
    return None


def build_curve(label: str, steps: list[StepRecord], objective: Objective, untrusted: set[int]) -> Curve:
    points = []
    for step in steps:
        latency_s = latency_at(step, objective.percentile)
        points.append(
            Point(
                step_index=step.step_index,
                offered_load=offered_load(step),
                requests_per_s=step.requests_per_s,
                inferences_per_s=step.inferences_per_s,
                latency_s=latency_s,
                meets_objective=latency_s <= objective.latency_s,
                trusted=step.step_index not in untrusted,
                mean_latency_s=step.latency_s.mean if step.latency_s else latency_s,
            )
        )
    curve = Curve(series=label, model=steps[0].model, points=points, knee_step_index=find_knee(points))
    good = [p for p in points if p.meets_objective and p.trusted]
    if good:
        best = max(good, key=lambda p: p.inferences_per_s)
        curve.best_step_index = best.step_index
        curve.best_inferences_per_s = best.inferences_per_s
        curve.best_requests_per_s = best.requests_per_s
    elif any(p.meets_objective for p in points):
        curve.notes.append("only flagged steps met the objective")
    for step in steps:
        if falls_short(step) and step.load.rate_rps:
            curve.notes.append(
                f"at {describe_load(step)} the server answered only {step.requests_per_s:.1f} req/s "
                f"({step.requests_per_s / step.load.rate_rps:.0%} of the offered rate)"
            )
    return curve
