"""`servescope compare BASELINE CANDIDATE`: two campaigns side by side, series by series, with the noise
each difference has to beat.

Series are matched first by their whole label (model, every server setting, client batch, load mode);
a baseline series left over is then matched to the one candidate series left over with the same model,
client batch and load mode (a settings change: what an optimisation makes). Anything still unmatched is
listed, never dropped. Within a matched pair, steps are matched by offered load.

Noise: each step's windows (the load tester measures every step in windows) give its spread: the
largest relative distance of a window's throughput (and p99) from their mean. A difference at a load is
significant when it exceeds the two steps' spreads added. The best throughput within the objective, the
knee and the verdict are compared too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.pipeline import analyze
from analysis.reader import load_campaign
from analysis.steps import describe_load, offered_load
from analysis.summary import Summary
from servescope.results import ResultsError, StepRecord

COMPARE_FILE = "compare.json"


@dataclass
class LoadPoint:
    """One load both campaigns measured, in a matched series."""

    load: str
    offered_load: float
    baseline_step: int
    candidate_step: int
    throughput_rps: tuple[float, float]
    inferences_per_s: tuple[float, float]
    p50_s: tuple[float, float]
    p99_s: tuple[float, float]
    noise: float  # the two steps' throughput spreads added (relative)
    p99_noise: float

    @property
    def throughput_change(self) -> float:
        base, cand = self.throughput_rps
        return cand / base - 1 if base > 0 else 0.0

    @property
    def p99_change(self) -> float:
        base, cand = self.p99_s
        return cand / base - 1 if base > 0 else 0.0

    @property
    def throughput_significant(self) -> bool:
        return abs(self.throughput_change) > self.noise

    @property
    def p99_significant(self) -> bool:
        return abs(self.p99_change) > self.p99_noise


@dataclass
class SeriesComparison:
    baseline: str
    candidate: str
    matched_by: str  # "label" or "model"
    points: list[LoadPoint]
    best_inferences_per_s: tuple[float | None, float | None]
    knee_step: tuple[int | None, int | None]
    verdict: tuple[str | None, str | None]

    def worst_regression(self) -> tuple[float, str] | None:
        """The largest significant change for the worse, as a positive fraction, and what it is."""
        worst: tuple[float, str] | None = None
        for point in self.points:
            for change, significant, what in (
                (-point.throughput_change, point.throughput_significant, f"throughput at {point.load}"),
                (point.p99_change, point.p99_significant, f"p99 at {point.load}"),
            ):
                if significant and change > 0 and (worst is None or change > worst[0]):
                    worst = (change, what)
        base, cand = self.best_inferences_per_s
        if base and cand is not None and cand < base:
            change = 1 - cand / base
            if worst is None or change > worst[0]:
                worst = (change, "best inferences/s within the objective")
        return worst


@dataclass
class Comparison:
    baseline: str
    candidate: str
    objective: str
    series: list[SeriesComparison]
    unmatched_baseline: list[str] = field(default_factory=list)
    unmatched_candidate: list[str] = field(default_factory=list)


def spread(step: StepRecord, attribute: str) -> float:
    """The largest relative distance of one of the step's windows from their mean (0 without windows)."""
    values = [getattr(w, attribute) for w in step.windows if getattr(w, attribute) is not None]
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return max(abs(v - mean) for v in values) / mean if mean > 0 else 0.0


def load_summary(folder: Path) -> tuple[Summary, dict[int, StepRecord]]:
    """A campaign folder analysed in memory, with its steps by index."""
    campaign = load_campaign(folder)
    return analyze(campaign), {step.step_index: step for step in campaign.steps}


def _identity(label: str) -> tuple[str, str, str]:
    """(model, client batch, load mode) of a series label."""
    parts = label.split(", ")
    return parts[0], parts[-2], parts[-1]


def compare_campaigns(baseline: Path, candidate: Path) -> Comparison:
    """Compare two campaign folders (see the module docstring)."""
    (base, base_steps), (cand, cand_steps) = load_summary(baseline), load_summary(candidate)
    base_curves = {c.series: c for c in base.curves}
    cand_curves = {c.series: c for c in cand.curves}
    pairs: list[tuple[str, str, str]] = [(s, s, "label") for s in base_curves if s in cand_curves]
    left_base = [s for s in base_curves if s not in cand_curves]
    left_cand = [s for s in cand_curves if s not in base_curves]
    for label in list(left_base):
        same = [c for c in left_cand if _identity(c) == _identity(label)]
        if len(same) == 1:
            pairs.append((label, same[0], "model"))
            left_base.remove(label)
            left_cand.remove(same[0])
    base_verdicts = {v.series: v.kind for v in base.verdicts}
    cand_verdicts = {v.series: v.kind for v in cand.verdicts}
    series = []
    for base_label, cand_label, matched_by in pairs:
        b_curve, c_curve = base_curves[base_label], cand_curves[cand_label]
        c_by_load = {p.offered_load: p for p in c_curve.points}
        points = []
        for b_point in b_curve.points:
            c_point = c_by_load.get(b_point.offered_load)
            if c_point is None:
                continue
            b_step, c_step = base_steps[b_point.step_index], cand_steps[c_point.step_index]
            assert b_step.latency_s is not None and c_step.latency_s is not None
            points.append(
                LoadPoint(
                    load=describe_load(b_step),
                    offered_load=offered_load(b_step),
                    baseline_step=b_step.step_index,
                    candidate_step=c_step.step_index,
                    throughput_rps=(b_step.requests_per_s, c_step.requests_per_s),
                    inferences_per_s=(b_step.inferences_per_s, c_step.inferences_per_s),
                    p50_s=(b_step.latency_s.p50, c_step.latency_s.p50),
                    p99_s=(b_step.latency_s.p99, c_step.latency_s.p99),
                    noise=spread(b_step, "throughput_rps") + spread(c_step, "throughput_rps"),
                    p99_noise=spread(b_step, "p99_s") + spread(c_step, "p99_s"),
                )
            )
        series.append(
            SeriesComparison(
                baseline=base_label,
                candidate=cand_label,
                matched_by=matched_by,
                points=points,
                best_inferences_per_s=(b_curve.best_inferences_per_s, c_curve.best_inferences_per_s),
                knee_step=(b_curve.knee_step_index, c_curve.knee_step_index),
                verdict=(base_verdicts.get(base_label), cand_verdicts.get(cand_label)),
            )
        )
    return Comparison(
        baseline=str(baseline),
        candidate=str(candidate),
        objective=base.objective.label,
        series=series,
        unmatched_baseline=left_base,
        unmatched_candidate=left_cand,
    )


def regressions(comparison: Comparison, threshold: float) -> list[str]:
    """One line per matched series that got worse, beyond its noise, by more than `threshold`."""
    lines = []
    for item in comparison.series:
        worst = item.worst_regression()
        if worst is not None and worst[0] > threshold:
            lines.append(f"{item.candidate}: {worst[1]} worse by {worst[0]:.0%}")
    return lines


def to_json(comparison: Comparison) -> dict[str, Any]:
    from analysis.summary import plain

    data = plain(comparison)
    for item, row in zip(comparison.series, data["series"], strict=True):
        worst = item.worst_regression()
        row["worst_regression"] = None if worst is None else {"change": worst[0], "what": worst[1]}
        for point, point_row in zip(item.points, row["points"], strict=True):
            point_row.update(
                throughput_change=point.throughput_change,
                throughput_significant=point.throughput_significant,
                p99_change=point.p99_change,
                p99_significant=point.p99_significant,
            )
    return data


def write_json(comparison: Comparison, path: Path) -> None:
    path.write_text(json.dumps(to_json(comparison), indent=2, sort_keys=True) + "\n")


__all__ = ["Comparison", "ResultsError", "compare_campaigns", "regressions", "to_json", "write_json"]
