"""What the verdict rules and the recommendations look at for one series, and helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.batching import BatchingAnalysis, batch_size_mean
from analysis.consistency import Flag
from analysis.curves import Curve, Objective
from analysis.decompose import Decomposition, batching_enabled
from analysis.quantization import Comparison
from analysis.utilization import Correlation, UtilizationPoint
from servescope.results import StepRecord

GENERATOR_BUSY_PERCENT = 90.0
FULL_BATCH_FRACTION = 0.9  # batches are full when they average 90% of max_batch_size
HOST_BUSY = 0.85  # server + generator use at least 85% of the machine's cores


@dataclass
class Context:
    """Everything the rules look at for one series."""

    curve: Curve
    steps: list[StepRecord]
    decompositions: dict[int, Decomposition]
    flags: list[Flag]
    batching: BatchingAnalysis
    utilization: dict[int, UtilizationPoint]
    comparisons: list[Comparison]
    objective: Objective
    correlation: Correlation | None = None  # utilization vs throughput over the model's steps


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.0%}"


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f} ms"


def pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.0%}"


def generator_busy(step: StepRecord) -> bool:
    busiest = step.cpu.generator_max_process_percent
    return step.cpu.generator_saturated or (busiest is not None and busiest >= GENERATOR_BUSY_PERCENT)


def load_shed(step: StepRecord) -> float:
    shed = step.errors_by_code.get("RESOURCE_EXHAUSTED", 0)
    if step.server is not None:
        shed = max(shed, step.server.rejected.get("queue_full", 0.0))
    return float(shed)


def full_batches(step: StepRecord) -> bool:
    mean = batch_size_mean(step)
    limit = step.server_settings.max_batch_size
    return bool(batching_enabled(step) and mean and limit and mean >= FULL_BATCH_FRACTION * limit)
