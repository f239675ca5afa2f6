"""Utilization against throughput: which resource rises with load, and which one runs out.

Pearson correlation of server CPU (cores), generator CPU (cores) and GPU utilization with throughput over
the steps of one model variant. A resource that tracks throughput (r close to 1) and reaches its limit
at the peak is the likely bottleneck; one that stays flat while throughput grows is not.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from analysis.thresholds import MIN_POINTS_FOR_CORRELATION
from servescope.results import CampaignInfo, StepRecord


@dataclass
class UtilizationPoint:
    step_index: int
    model: str
    inferences_per_s: float
    server_cores: float | None
    generator_cores: float | None
    gpu_utilization: float | None  # 0..1
    machine_cores: int | None

    @property
    def host_busy_fraction(self) -> float | None:
        """Share of the machine's cores busy with the server and the generator together."""
        if not self.machine_cores or self.server_cores is None:
            return None
        return (self.server_cores + (self.generator_cores or 0.0)) / self.machine_cores


@dataclass
class Correlation:
    model: str
    points: int
    server_cpu_r: float | None
    generator_cpu_r: float | None
    gpu_r: float | None


@dataclass
class UtilizationAnalysis:
    points: dict[int, UtilizationPoint] = field(default_factory=dict)  # by step index
    correlations: dict[str, Correlation] = field(default_factory=dict)  # by model


def pearson(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < MIN_POINTS_FOR_CORRELATION:
        return None
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def utilization_point(step: StepRecord, info: CampaignInfo) -> UtilizationPoint:
    return UtilizationPoint(
        step_index=step.step_index,
        model=step.model,
        inferences_per_s=step.inferences_per_s,
        server_cores=step.cpu.server_cores,
        generator_cores=step.cpu.generator_cores,
        gpu_utilization=step.gpu.utilization_ratio if step.gpu is not None else None,
        machine_cores=step.cpu.machine_cores or info.machine.cpu_count or None,
    )


def _paired(points: list[UtilizationPoint], attribute: str) -> float | None:
    pairs = [(p.inferences_per_s, getattr(p, attribute)) for p in points if getattr(p, attribute) is not None]
    return pearson([a for a, _ in pairs], [b for _, b in pairs])


def analyze_utilization(steps: list[StepRecord], info: CampaignInfo) -> UtilizationAnalysis:
    result = UtilizationAnalysis()
    by_model: dict[str, list[UtilizationPoint]] = defaultdict(list)
    for step in steps:
        point = utilization_point(step, info)
        result.points[step.step_index] = point
        by_model[step.model].append(point)
    for model, points in by_model.items():
        result.correlations[model] = Correlation(
            model=model,
            points=len(points),
            server_cpu_r=_paired(points, "server_cores"),
            generator_cpu_r=_paired(points, "generator_cores"),
            gpu_r=_paired(points, "gpu_utilization"),
        )
    return result
