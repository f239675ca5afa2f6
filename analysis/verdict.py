"""The verdict of one series (a model variant under one configuration): what limits it, with its evidence
and recommendations that carry numbers.

The verdict rests on the series' peak step (its highest offered load), where a bottleneck shows most.
The rules and kinds are data (rules.py); this module runs them and assembles the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analysis.context import Context, Situation
from analysis.recommend import Recommendation
from analysis.rules import first_finding
from analysis.steps import batch_size_mean, batching_enabled, describe_load


@dataclass
class Verdict:
    model: str
    series: str
    kind: str  # a key of rules.KINDS
    title: str
    css_class: str
    based_on_steps: list[int]
    evidence: dict[str, Any]
    reasons: list[str]
    recommendations: list[Recommendation] = field(default_factory=list)
    flagged_steps: list[int] = field(default_factory=list)


def judge(ctx: Context) -> Verdict:
    s = Situation(ctx)
    finding = first_finding(s)
    kind = finding.kind
    return Verdict(
        model=s.peak.model,
        series=ctx.curve.series,
        kind=kind.key,
        title=kind.title,
        css_class=kind.css_class,
        based_on_steps=[s.peak.step_index],
        evidence={**_evidence(s), **finding.evidence},
        reasons=finding.reasons,
        recommendations=kind.recommend(s),
        flagged_steps=sorted({f.step_index for f in ctx.flags}),
    )


def _evidence(s: Situation) -> dict[str, Any]:
    ctx, peak, parts, util = s.ctx, s.peak, s.parts, s.util
    settings = peak.server_settings
    return {
        "peak_step": peak.step_index,
        "offered_load": describe_load(peak),
        "inferences_per_s": peak.inferences_per_s,
        "requests_per_s": peak.requests_per_s,
        f"{ctx.objective.percentile}_s": s.latency_s,
        "objective_s": ctx.objective.latency_s,
        "mean_latency_s": parts.client_mean_s,
        "queueing_share": parts.share("queueing_s"),
        "batching_delay_share": parts.share("batching_delay_s"),
        "compute_share": parts.share("compute_s"),
        "rest_share": parts.share("rest_s"),
        "batch_size_mean": batch_size_mean(peak),
        "max_batch_size": settings.max_batch_size if batching_enabled(peak) else 1,
        "max_queue_delay_us": settings.max_queue_delay_us,
        "server_cores": util.server_cores,
        "generator_cores": util.generator_cores,
        "machine_cores": util.machine_cores,
        "host_busy_fraction": util.host_busy_fraction,
        "gpu_utilization": util.gpu_utilization,
        "server_cpu_r": ctx.correlation.server_cpu_r if ctx.correlation else None,
        "generator_cpu_r": ctx.correlation.generator_cpu_r if ctx.correlation else None,
        "gpu_r": ctx.correlation.gpu_r if ctx.correlation else None,
        "error_ratio": peak.error_ratio,
        "knee_step": ctx.curve.knee_step_index,
        "best_step": ctx.curve.best_step_index,
        "best_inferences_per_s": ctx.curve.best_inferences_per_s,
    }
