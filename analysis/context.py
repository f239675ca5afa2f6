"""What the verdict rules and the recommendations look at: the series (Context) and its peak step with the
figures every rule reads (Situation)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from analysis.batching import BatchFit, BatchingAnalysis
from analysis.consistency import Flag
from analysis.curves import Curve, Objective, Point
from analysis.decompose import Decomposition
from analysis.fmt import ms
from analysis.quantization import Comparison
from analysis.steps import batch_size_mean, describe_load, latency_at, offered_load
from analysis.utilization import Correlation, UtilizationPoint
from servescope.results import StepRecord, TransportProbe


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
    transport: TransportProbe | None = None  # campaign.json: what a request costs over each transport


class Situation:
    """The series at its peak step (its highest offered load), where a bottleneck shows most."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.peak = max(ctx.steps, key=lambda s: (offered_load(s), s.step_index))
        self.parts = ctx.decompositions[self.peak.step_index]
        self.util = ctx.utilization[self.peak.step_index]
        self.objective = ctx.objective
        self.fit: BatchFit | None = ctx.batching.fits.get(self.peak.model)

    @property
    def at(self) -> str:
        """How reasons name the peak step."""
        peak = self.peak
        return f"step {peak.step_index} ({describe_load(peak)}, the highest load of this series)"

    @cached_property
    def latency_s(self) -> float:
        """The objective's percentile at the peak step."""
        return latency_at(self.peak, self.objective.percentile)

    def share(self, component: str) -> float:
        """A component's share of the mean latency at the peak (0 when the server was not scraped)."""
        return self.parts.share(component) or 0.0

    @property
    def shares(self) -> str:
        return (
            f"queueing {self.share('queueing_s'):.0%}, batch window {self.share('batching_delay_s'):.0%}, "
            f"compute {self.share('compute_s'):.0%}, rest {self.share('rest_s'):.0%} of the "
            f"{ms(self.parts.client_mean_s)} mean latency"
        )

    @property
    def mean_batch(self) -> float:
        return batch_size_mean(self.peak) or 0.0

    @property
    def requests_per_batch(self) -> float:
        """Requests (not samples) per executed batch: client batches do not count as company."""
        return self.mean_batch / max(self.peak.client_batch_size, 1)

    @property
    def device(self) -> str:
        return self.peak.server_settings.device or "cpu"

    @property
    def cores(self) -> str:
        util = self.util
        if util.server_cores is None or not util.machine_cores:
            return "host CPU not recorded"
        return (
            f"server {util.server_cores:.2f} + generator {util.generator_cores or 0:.2f} "
            f"of {util.machine_cores} cores"
        )

    @property
    def knee(self) -> Point | None:
        curve = self.ctx.curve
        return next((p for p in curve.points if p.step_index == curve.knee_step_index), None)
