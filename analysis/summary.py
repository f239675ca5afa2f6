"""The analysis' result types: one row per step, and the Summary of a campaign that every report
renders; summary.json is Summary.to_json(). Types only: no analysis and no rendering here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from analysis.batching import BatchingAnalysis
from analysis.consistency import Flag
from analysis.curves import Curve, Objective
from analysis.decompose import Decomposition
from analysis.floor import FloorEstimate
from analysis.quantization import Comparison
from analysis.reader import LeftOut
from analysis.utilization import Correlation
from analysis.verdict import Verdict
from servescope.metrics import ServerDeltas

SUMMARY_FILE = "summary.json"
MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"


@dataclass
class StepRow:
    """One line of the table of steps: the measurements and what the analysis made of them."""

    step_index: int
    series: str
    model: str
    load: str
    offered_load: float
    stable: bool
    completed: int
    error_ratio: float
    requests_per_s: float
    inferences_per_s: float
    p50_s: float
    p99_s: float
    p999_s: float
    mean_s: float
    batch_size_mean: float | None
    server: ServerDeltas | None  # the server's own figures for the step, as recorded (or from Prometheus)
    decomposition: Decomposition
    server_cores: float | None
    generator_cores: float | None
    gpu_utilization: float | None
    littles_law_ratio: float | None
    flags: list[str]


@dataclass
class Summary:
    """Everything the analysis found; summary.json is this object as JSON."""

    campaign: str
    campaign_dir: str
    output_dir: str
    objective: Objective
    machine: dict[str, Any]
    interrupted: bool
    verdicts: list[Verdict]
    steps: list[StepRow]
    left_out: list[LeftOut]
    flags: list[Flag]
    curves: list[Curve]
    batching: BatchingAnalysis
    quantization: list[Comparison]
    correlations: list[Correlation]
    floor: list[FloorEstimate]
    notes: list[str] = field(default_factory=list)
    prometheus_url: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    # Follow-up results linked from the reports, text -> path relative to the report (e.g. the demo's
    # verified recommendation and its compare report).
    links: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = plain(self)
        # Per variant at a glance: the verdict of each of its series, in series order.
        by_model: dict[str, list[dict[str, str]]] = {}
        for verdict in self.verdicts:
            by_model.setdefault(verdict.model, []).append({"series": verdict.series, "kind": verdict.kind})
        data["verdicts_by_model"] = by_model
        for estimate, row in zip(self.floor, data["floor"], strict=False):
            row.update(floor_s=estimate.floor_s, bound=estimate.bound, efficiency=estimate.efficiency)
        for finding, row in zip(
            self.batching.delay_findings, data["batching"]["delay_findings"], strict=True
        ):
            row.update(share=finding.share, saving_s=finding.saving_s)
        for fit in data["batching"]["fits"].values():
            fit["points"] = [
                {"step_index": i, "batch_size_mean": b, "compute_s": c} for i, b, c in fit["points"]
            ]
        return data


def plain(value: Any) -> Any:
    """Dataclasses, dicts, lists and tuples as JSON-ready values (NaN and infinity as None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None  # JSON has no NaN/Infinity
    return value
