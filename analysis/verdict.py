"""The verdict: what limits each series (a model variant under one configuration), with its evidence
and recommendations that carry numbers.

The verdict rests on the series' peak step (its highest offered load), where a bottleneck shows most;
the lowest-load step is used for the cost of the batch window. Rules, first match wins:

1. generator-bound: the load generator was saturated at the peak step (CpuUsage.generator_saturated, or
   its busiest process at >= GENERATOR_BUSY_PERCENT of a core). Nothing else measured there can be
   trusted to describe the server.
2. undetermined: no server metrics at the peak step, and the objective was not met with headroom.
3. batching-delay-bound: at the peak step the batch window is >= DELAY_DOMINANT_SHARE of the mean
   latency while batches hold <= LONELY_BATCH_MAX requests: the window costs latency and buys nothing.
4. healthy: the objective's percentile is within HEADROOM of the objective at the peak step, errors are
   <= 1%, and the server is not saturated (no knee, queueing below QUEUE_DOMINANT_SHARE, no load shed,
   an open loop answered at least OPEN_LOOP_SHORTFALL of the offered rate).
5. on a GPU: compute-bound (GPU) when GPU utilization >= GPU_BUSY; host-bound when the GPU is below
   GPU_IDLE while the host's CPUs are >= HOST_BUSY busy.
6. compute-bound (CPU): on a CPU server, the host's CPUs are >= HOST_BUSY busy, batching is on and
   batches are not full (the batch limit is not what holds them back), and the rest does not dominate.
   Otherwise, queueing dominant (>= QUEUE_DOMINANT_SHARE of the mean latency): queueing/under-provisioned
   (batching off, batches full, or CPUs left idle: each has a configuration fix).
7. serialization/network-bound: the rest (outside queue and compute) >= REST_DOMINANT_SHARE.
8. otherwise the largest latency component names the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analysis.batching import batch_size_mean
from analysis.consistency import ERROR_RATIO_MAX
from analysis.context import HOST_BUSY, Context, full_batches, generator_busy, load_shed, ms, pct
from analysis.curves import latency_at, offered_load
from analysis.decompose import Decomposition, batching_enabled
from analysis.load import describe_load
from analysis.recommend import recommend
from analysis.utilization import UtilizationPoint
from servescope.results import StepRecord

# Thresholds of the rules above (GENERATOR_BUSY_PERCENT, HOST_BUSY, FULL_BATCH_FRACTION: context.py).
HEADROOM = 0.8  # healthy: latency percentile <= 80% of the objective
QUEUE_DOMINANT_SHARE = 0.5
DELAY_DOMINANT_SHARE = 0.4
LONELY_BATCH_MAX = 1.5
REST_DOMINANT_SHARE = 0.5
IDLE_HOST = 0.5  # server + generator below half the cores: the machine was not busy with this test
GPU_BUSY = 0.85
GPU_IDLE = 0.5
OPEN_LOOP_SHORTFALL = 0.9  # open loop: answering under 90% of the offered rate means saturated

KINDS = {
    "generator-bound": "generator-bound: the load generator was the limit",
    "queueing": "queueing / under-provisioned: the server is saturated and requests wait in its queue",
    "compute-bound-cpu": "compute-bound on CPU",
    "compute-bound-gpu": "compute-bound on GPU",
    "host-bound": "host-bound: the GPU idles while the host CPU is saturated",
    "batching-delay-bound": "batching-delay-bound: the batch window is longer than the load needs",
    "serialization-bound": "serialization/network-bound: time goes outside queue and compute",
    "healthy": "healthy: objective met with headroom",
    "undetermined": "undetermined: not enough measurements",
}


@dataclass
class Verdict:
    model: str
    series: str
    kind: str  # a key of KINDS
    title: str
    based_on_steps: list[int]
    evidence: dict[str, Any]
    reasons: list[str]
    recommendations: list[str] = field(default_factory=list)
    flagged_steps: list[int] = field(default_factory=list)


def judge(ctx: Context) -> Verdict:
    peak = max(ctx.steps, key=lambda s: (offered_load(s), s.step_index))
    parts = ctx.decompositions[peak.step_index]
    util = ctx.utilization[peak.step_index]
    kind, reasons = _classify(ctx, peak, parts, util)
    verdict = Verdict(
        model=peak.model,
        series=ctx.curve.series,
        kind=kind,
        title=KINDS[kind],
        based_on_steps=[peak.step_index],
        evidence=_evidence(ctx, peak, parts, util),
        reasons=reasons,
        flagged_steps=sorted({f.step_index for f in ctx.flags}),
    )
    verdict.recommendations = recommend(ctx, kind, peak, parts, util)
    return verdict


def _evidence(ctx: Context, peak: StepRecord, parts: Decomposition, util: UtilizationPoint) -> dict[str, Any]:
    settings = peak.server_settings
    return {
        "peak_step": peak.step_index,
        "offered_load": describe_load(peak),
        "inferences_per_s": peak.inferences_per_s,
        "requests_per_s": peak.requests_per_s,
        f"{ctx.objective.percentile}_s": latency_at(peak, ctx.objective.percentile),
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


def _classify(
    ctx: Context, peak: StepRecord, parts: Decomposition, util: UtilizationPoint
) -> tuple[str, list[str]]:
    at = f"step {peak.step_index} ({describe_load(peak)}, the highest load of this series)"
    latency = latency_at(peak, ctx.objective.percentile)
    objective = ctx.objective
    if generator_busy(peak):
        busiest = peak.cpu.generator_max_process_percent
        cores = peak.cpu.generator_cores
        return "generator-bound", [
            f"at {at} the load generator was saturated: busiest process at "
            f"{'n/a' if busiest is None else f'{busiest:.0f}%'} of a core, "
            f"{'n/a' if cores is None else f'{cores:.2f}'} cores in all",
            f"the server answered {peak.requests_per_s:.1f} req/s with "
            f"queueing at {pct(parts.share('queueing_s'))} of the mean latency: it was not the limit",
        ]
    headroom = latency <= HEADROOM * objective.latency_s and peak.error_ratio <= ERROR_RATIO_MAX
    if not parts.available:
        if headroom and not ctx.curve.saturated:
            return "healthy", [
                f"at {at} {objective.percentile} {ms(latency)} <= {HEADROOM:.0%} of the objective "
                f"{ms(objective.latency_s)}; no server metrics, so the split of latency is unknown"
            ]
        return "undetermined", [
            f"at {at} the server's metrics were not recorded: latency cannot be split",
            _saturation_sentence(ctx, peak, load_shed(peak)),
        ]
    queue_share = parts.share("queueing_s") or 0.0
    delay_share = parts.share("batching_delay_s") or 0.0
    compute_share = parts.share("compute_s") or 0.0
    rest_share = parts.share("rest_s") or 0.0
    shares = (
        f"queueing {queue_share:.0%}, batch window {delay_share:.0%}, compute {compute_share:.0%}, "
        f"rest {rest_share:.0%} of the {ms(parts.client_mean_s)} mean latency"
    )
    mean_batch = batch_size_mean(peak) or 0.0
    per_request_batch = mean_batch / max(peak.client_batch_size, 1)
    if delay_share >= DELAY_DOMINANT_SHARE and per_request_batch <= LONELY_BATCH_MAX:
        return "batching-delay-bound", [
            f"at {at} requests waited {ms(parts.batching_delay_s)} in the batch window "
            f"(max_queue_delay_us {peak.server_settings.max_queue_delay_us}): {shares}",
            f"batches held {per_request_batch:.2f} requests on average: the window bought no batching",
        ]
    shed = load_shed(peak)
    saturated = ctx.curve.saturated or queue_share >= QUEUE_DOMINANT_SHARE or shed > 0 or _falls_short(peak)
    if headroom and not saturated:
        return "healthy", [
            f"at {at} {objective.percentile} {ms(latency)} is {1 - latency / objective.latency_s:.0%} "
            f"below the objective {ms(objective.latency_s)}, errors {peak.error_ratio:.2%}",
            f"latency never grew faster than throughput over the series; {shares}",
        ]
    busy = util.host_busy_fraction
    cores = (
        f"server {util.server_cores:.2f} + generator {util.generator_cores or 0:.2f} "
        f"of {util.machine_cores} cores"
        if util.server_cores is not None and util.machine_cores
        else "host CPU not recorded"
    )
    device = peak.server_settings.device or "cpu"
    gpu = util.gpu_utilization
    saturation = _saturation_sentence(ctx, peak, shed)
    if device == "cuda" and gpu is not None:
        if gpu >= GPU_BUSY:
            return "compute-bound-gpu", [
                f"at {at} the GPU was {gpu:.0%} busy at {peak.inferences_per_s:.0f} inferences/s; "
                f"{saturation}",
                shares,
                *_tracks(ctx, "gpu_r", "GPU utilization"),
            ]
        if gpu < GPU_IDLE and busy is not None and busy >= HOST_BUSY:
            return "host-bound", [
                f"at {at} the GPU was only {gpu:.0%} busy while the host CPUs were {busy:.0%} busy ({cores})",
                f"{saturation}; {shares}",
            ]
    cpu_saturated = device == "cpu" and busy is not None and busy >= HOST_BUSY
    if (
        cpu_saturated
        and batching_enabled(peak)
        and not full_batches(peak)
        and rest_share < REST_DOMINANT_SHARE
    ):
        return "compute-bound-cpu", [
            f"at {at} every CPU was busy ({cores}, {busy:.0%}) with batches of {mean_batch:.1f} samples "
            f"(not full, so the batch limit is not what holds them back); {shares}",
            saturation,
            *_tracks(ctx, "server_cpu_r", "server CPU"),
        ]
    if queue_share >= QUEUE_DOMINANT_SHARE:
        if not batching_enabled(peak):
            return "queueing", [
                f"at {at} {shares}; batching is off, so every request is computed alone",
                saturation,
            ]
        if full_batches(peak):
            return "queueing", [
                f"at {at} {shares}; batches were full ({mean_batch:.1f} of max "
                f"{peak.server_settings.max_batch_size} samples)",
                saturation,
            ]
        return "queueing", [f"at {at} {shares}; CPUs were not all busy ({cores})", saturation]
    if rest_share >= REST_DOMINANT_SHARE:
        reasons = [
            f"at {at} {shares}: server overhead {ms(parts.server_overhead_s)}, outside the server "
            f"{ms(parts.outside_server_s)}",
            saturation,
        ]
        if parts.outside_server_s is not None:
            # Little's law on the part outside the server: how many requests were there at any time.
            outside = peak.requests_per_s * parts.outside_server_s
            reasons.append(
                f"on average {outside:.1f} requests were outside the server's handler (network, gRPC "
                "transport, client): a cost that grows with load is a queue there, not a fixed "
                "per-request cost"
            )
        if busy is not None and busy < IDLE_HOST:
            reasons.append(
                f"the server and the generator used only {busy:.0%} of the {util.machine_cores} cores: on a "
                "shared machine, other processes may have held the CPU"
            )
        return "serialization-bound", reasons
    largest = max(
        ("queueing", queue_share),
        ("batching", delay_share),
        ("compute", compute_share),
        ("rest", rest_share),
        key=lambda kv: kv[1],
    )[0]
    kind = {
        "queueing": "queueing",
        "batching": "batching-delay-bound",
        "compute": "compute-bound-gpu" if device == "cuda" else "compute-bound-cpu",
        "rest": "serialization-bound",
    }[largest]
    return kind, [f"at {at} {shares} ({cores})", saturation]


def _tracks(ctx: Context, attribute: str, what: str) -> list[str]:
    """A sentence on how closely a resource followed throughput across the model's steps, if known."""
    correlation = ctx.correlation
    r = getattr(correlation, attribute, None) if correlation else None
    if r is None or correlation is None:
        return []
    return [
        f"{what} tracked throughput with r = {r:.2f} over the {correlation.points} steps of {ctx.curve.model}"
    ]


def _falls_short(step: StepRecord) -> bool:
    """An open-loop step whose answers fell below OPEN_LOOP_SHORTFALL of the offered rate."""
    rate = step.load.rate_rps
    return step.load.mode == "open" and bool(rate) and step.requests_per_s < OPEN_LOOP_SHORTFALL * rate


def _saturation_sentence(ctx: Context, peak: StepRecord, shed: float) -> str:
    parts = []
    if ctx.curve.knee_step_index is not None:
        knee = next(p for p in ctx.curve.points if p.step_index == ctx.curve.knee_step_index)
        parts.append(
            f"latency outgrew throughput after step {knee.step_index} "
            f"({knee.inferences_per_s:.0f} inferences/s, {ctx.objective.percentile} {ms(knee.latency_s)})"
        )
    if shed:
        parts.append(f"{shed:.0f} requests were shed (queue full)")
    if _falls_short(peak):
        parts.append(
            f"only {peak.requests_per_s:.0f} of the {peak.load.rate_rps:g} req/s offered were answered"
        )
    latency = latency_at(peak, ctx.objective.percentile)
    met = "meets" if latency <= ctx.objective.latency_s else "misses"
    parts.append(
        f"{ctx.objective.percentile} {ms(latency)} {met} the objective {ms(ctx.objective.latency_s)}"
    )
    return "; ".join(parts)
