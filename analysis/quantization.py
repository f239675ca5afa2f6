"""Precision variants side by side: fp32 vs int8 vs fp16 under the same configuration and load.

Variants are compared within one configuration (the series label without the model name), so a
difference comes from the model alone. The reference is the fp32 variant where there is one. Throughput
is the highest inferences/s that met the latency objective (curves.py); latency is taken at the highest
offered load that every variant was measured at.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from analysis.curves import Curve, series_label
from analysis.steps import offered_load
from servescope.results import CampaignInfo, StepRecord


@dataclass
class VariantRow:
    model: str
    precision: str | None
    file_size_bytes: float | None
    accuracy: float | None
    accuracy_delta: float | None  # vs the reference, in accuracy units (0.003 = 0.3 points)
    best_inferences_per_s: float | None
    throughput_ratio: float | None  # best throughput vs the reference's
    size_ratio: float | None
    inferences_per_s_at_load: float | None
    ratio_at_load: float | None  # inferences/s at the common load vs the reference's
    p50_s_at_load: float | None
    p99_s_at_load: float | None


@dataclass
class Comparison:
    configuration: str
    reference_model: str
    common_load: float | None  # users or req/s; None when the variants share no load level
    rows: list[VariantRow] = field(default_factory=list)


def configuration_of(step: StepRecord) -> str:
    return series_label(step).split(", ", 1)[1]


def compare_variants(
    steps: list[StepRecord], curves: dict[str, Curve], info: CampaignInfo
) -> list[Comparison]:
    by_configuration: dict[str, dict[str, list[StepRecord]]] = defaultdict(lambda: defaultdict(list))
    for step in steps:
        by_configuration[configuration_of(step)][step.model].append(step)
    comparisons = []
    for configuration, by_model in sorted(by_configuration.items()):
        if len(by_model) < 2:
            continue
        models = sorted(by_model)
        reference = next(
            (
                m
                for m in models
                if (info.models.get(m, {}).get("precision") or by_model[m][0].precision) == "fp32"
            ),
            models[0],
        )
        loads = [{offered_load(s) for s in by_model[m]} for m in models]
        common = set.intersection(*loads)
        common_load = max(common) if common else None
        comparison = Comparison(
            configuration=configuration, reference_model=reference, common_load=common_load
        )
        reference_best = _best(curves, f"{reference}, {configuration}")
        reference_at_load = _at_load(by_model[reference], common_load)
        reference_meta = info.models.get(reference, {})
        for model in models:
            meta = info.models.get(model, {})
            best = _best(curves, f"{model}, {configuration}")
            at_load = _at_load(by_model[model], common_load)
            accuracy = meta.get("accuracy")
            reference_accuracy = reference_meta.get("accuracy")
            size = meta.get("file_size_bytes")
            reference_size = reference_meta.get("file_size_bytes")
            comparison.rows.append(
                VariantRow(
                    model=model,
                    precision=meta.get("precision") or by_model[model][0].precision,
                    file_size_bytes=size,
                    accuracy=accuracy,
                    accuracy_delta=(accuracy - reference_accuracy)
                    if accuracy is not None and reference_accuracy is not None
                    else None,
                    best_inferences_per_s=best,
                    throughput_ratio=best / reference_best if best and reference_best else None,
                    size_ratio=size / reference_size if size and reference_size else None,
                    inferences_per_s_at_load=at_load.inferences_per_s if at_load else None,
                    ratio_at_load=at_load.inferences_per_s / reference_at_load.inferences_per_s
                    if at_load and reference_at_load and reference_at_load.inferences_per_s > 0
                    else None,
                    p50_s_at_load=at_load.latency_s.p50 if at_load and at_load.latency_s else None,
                    p99_s_at_load=at_load.latency_s.p99 if at_load and at_load.latency_s else None,
                )
            )
        comparisons.append(comparison)
    return comparisons


def _at_load(steps: list[StepRecord], load: float | None) -> StepRecord | None:
    if load is None:
        return None
    return max((s for s in steps if offered_load(s) == load), key=lambda s: s.step_index)


def _best(curves: dict[str, Curve], label: str) -> float | None:
    curve = curves.get(label)
    return curve.best_inferences_per_s if curve is not None else None
