"""Compute time by batch size as the server measured it (ModelStatistics over each step), per model and
device, over the whole campaign: the curve batch-size advice rests on.

A linear fixed + per-sample fit cannot see that a CPU model can be slower per sample at batch 32 than at
batch 4; the measured curve can. Throughput per sample at batch b is b / t(b), with t(b) the mean
compute time of the batches of that size the server ran. The best size is the smallest one beyond which
no measured larger size improves throughput per sample by BATCH_GAIN_MIN.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from analysis.thresholds import BATCH_GAIN_MIN
from servescope.results import StepRecord

MIN_EXECUTIONS = 20  # batches of one size needed before its mean compute time counts


@dataclass
class BatchCurve:
    model: str
    device: str
    points: dict[int, tuple[int, float]] = field(default_factory=dict)  # size -> (executions, mean s)
    source: str = "steps"  # "steps": the load steps' batches; "probe": the campaign's compute probe

    @property
    def basis(self) -> str:
        """How a recommendation names where the curve comes from."""
        return "the measured compute" if self.source == "steps" else "the compute probe before the steps"

    def compute_s(self, size: int) -> float | None:
        point = self.points.get(size)
        return point[1] if point else None

    def samples_per_s(self, size: int) -> float | None:
        """One compute slot's samples per second with batches of this size."""
        mean_s = self.compute_s(size)
        return size / mean_s if mean_s else None

    @property
    def largest(self) -> int:
        return max(self.points, default=0)

    def best_size(self, gain_min: float = BATCH_GAIN_MIN) -> int | None:
        """The smallest measured size that no larger measured size beats by gain_min per sample."""
        sizes = sorted(self.points)
        for index, size in enumerate(sizes):
            rate = self.samples_per_s(size) or 0.0
            if all(
                (self.samples_per_s(larger) or 0.0) < rate * (1 + gain_min) for larger in sizes[index + 1 :]
            ):
                return size
        return None

    def peak(self) -> tuple[int, float] | None:
        """The measured size with the most throughput per sample, and that throughput."""
        rates = {size: self.samples_per_s(size) or 0.0 for size in self.points}
        if not rates:
            return None
        size = max(rates, key=lambda s: rates[s])
        return size, rates[size]


def build_curves(
    steps: list[StepRecord], probes: dict[str, dict[str, list[float]]] | None = None
) -> dict[str, BatchCurve]:
    """One curve per model (the device with the most executions when a campaign mixes devices). Where the
    steps measured fewer than two batch sizes (batching off, or too little load to batch), the campaign's
    compute probe (campaign.json `compute_probe`, one request at a time at each size) stands in."""
    curves = _step_curves(steps)
    devices = {step.model: step.server_settings.device or "unknown" for step in steps}
    for model, by_size in (probes or {}).items():
        if len(curves.get(model, BatchCurve(model, "")).points) >= 2:
            continue
        probe = BatchCurve(model, devices.get(model, "unknown"), source="probe")
        for size, (count, seconds) in sorted(by_size.items(), key=lambda item: int(item[0])):
            if count >= MIN_EXECUTIONS and seconds > 0:
                probe.points[int(size)] = (int(count), seconds / count)
        if len(probe.points) >= 2:
            curves[model] = probe
    return curves


def _step_curves(steps: list[StepRecord]) -> dict[str, BatchCurve]:
    totals: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(lambda: [0.0, 0.0])
    )
    for step in steps:
        for size_text, (count, seconds) in (step.compute_by_batch_size or {}).items():
            entry = totals[(step.model, step.server_settings.device or "unknown")][int(size_text)]
            entry[0] += count
            entry[1] += seconds
    curves: dict[str, BatchCurve] = {}
    for (model, device), by_size in sorted(totals.items()):
        curve = BatchCurve(model, device)
        for size, (count, seconds) in sorted(by_size.items()):
            if count >= MIN_EXECUTIONS and seconds > 0:
                curve.points[size] = (int(count), seconds / count)
        executions = sum(p[0] for p in curve.points.values())
        current = curves.get(model)
        if curve.points and (current is None or executions > sum(p[0] for p in current.points.values())):
            curves[model] = curve
    return curves
