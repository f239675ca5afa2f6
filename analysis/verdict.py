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
   <= 1%, and the server is not saturated (no knee, queueing below QUEUE_DOMINANT_SHARE, no load shed).
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

import math
from dataclasses import dataclass, field
from typing import Any

from analysis.batching import BatchFit, BatchingAnalysis, batch_size_mean, suggest_delay_us, suggest_max_batch
from analysis.consistency import ERROR_RATIO_MAX, Flag
from analysis.curves import Curve, Objective, latency_at, offered_load
from analysis.decompose import Decomposition, batching_enabled
from analysis.load import describe_load
from analysis.quantization import Comparison, configuration_of
from analysis.utilization import UtilizationPoint
from servescope.results import StepRecord

GENERATOR_BUSY_PERCENT = 90.0
HEADROOM = 0.8  # healthy: latency percentile <= 80% of the objective
QUEUE_DOMINANT_SHARE = 0.5
DELAY_DOMINANT_SHARE = 0.4
LONELY_BATCH_MAX = 1.5
REST_DOMINANT_SHARE = 0.5
IDLE_HOST = 0.5  # server + generator below half the cores: the machine was not busy with this test
GPU_BUSY = 0.85
GPU_IDLE = 0.5
HOST_BUSY = 0.85
FULL_BATCH_FRACTION = 0.9
BETTER_VARIANT_RATIO = 1.1  # recommend another precision when it is at least 10% faster

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


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.0%}"


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
    verdict.recommendations = _recommend(ctx, verdict, peak, parts, util)
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
        "error_ratio": peak.error_ratio,
        "knee_step": ctx.curve.knee_step_index,
        "best_step": ctx.curve.best_step_index,
        "best_inferences_per_s": ctx.curve.best_inferences_per_s,
    }


def _generator_busy(step: StepRecord) -> bool:
    busiest = step.cpu.generator_max_process_percent
    return step.cpu.generator_saturated or (busiest is not None and busiest >= GENERATOR_BUSY_PERCENT)


def _load_shed(step: StepRecord) -> float:
    shed = step.errors_by_code.get("RESOURCE_EXHAUSTED", 0)
    if step.server is not None:
        shed = max(shed, step.server.rejected.get("queue_full", 0.0))
    return float(shed)


def _full_batches(step: StepRecord) -> bool:
    mean = batch_size_mean(step)
    limit = step.server_settings.max_batch_size
    return bool(batching_enabled(step) and mean and limit and mean >= FULL_BATCH_FRACTION * limit)


def _classify(
    ctx: Context, peak: StepRecord, parts: Decomposition, util: UtilizationPoint
) -> tuple[str, list[str]]:
    at = f"step {peak.step_index} ({describe_load(peak)}, the highest load of this series)"
    latency = latency_at(peak, ctx.objective.percentile)
    objective = ctx.objective
    if _generator_busy(peak):
        busiest = peak.cpu.generator_max_process_percent
        cores = peak.cpu.generator_cores
        return "generator-bound", [
            f"at {at} the load generator was saturated: busiest process at "
            f"{'n/a' if busiest is None else f'{busiest:.0f}%'} of a core, "
            f"{'n/a' if cores is None else f'{cores:.2f}'} cores in all",
            f"the server answered {peak.requests_per_s:.1f} req/s with "
            f"queueing at {_pct(parts.share('queueing_s'))} of the mean latency: it was not the limit",
        ]
    headroom = latency <= HEADROOM * objective.latency_s and peak.error_ratio <= ERROR_RATIO_MAX
    if not parts.available:
        if headroom and not ctx.curve.saturated:
            return "healthy", [
                f"at {at} {objective.percentile} {_ms(latency)} <= {HEADROOM:.0%} of the objective "
                f"{_ms(objective.latency_s)}; no server metrics, so the split of latency is unknown"
            ]
        return "undetermined", [
            f"at {at} the server's metrics were not recorded: latency cannot be split",
            _saturation_sentence(ctx, peak, _load_shed(peak)),
        ]
    queue_share = parts.share("queueing_s") or 0.0
    delay_share = parts.share("batching_delay_s") or 0.0
    compute_share = parts.share("compute_s") or 0.0
    rest_share = parts.share("rest_s") or 0.0
    shares = (
        f"queueing {queue_share:.0%}, batch window {delay_share:.0%}, compute {compute_share:.0%}, "
        f"rest {rest_share:.0%} of the {_ms(parts.client_mean_s)} mean latency"
    )
    mean_batch = batch_size_mean(peak) or 0.0
    per_request_batch = mean_batch / max(peak.client_batch_size, 1)
    if delay_share >= DELAY_DOMINANT_SHARE and per_request_batch <= LONELY_BATCH_MAX:
        return "batching-delay-bound", [
            f"at {at} requests waited {_ms(parts.batching_delay_s)} in the batch window "
            f"(max_queue_delay_us {peak.server_settings.max_queue_delay_us}): {shares}",
            f"batches held {per_request_batch:.2f} requests on average: the window bought no batching",
        ]
    shed = _load_shed(peak)
    saturated = ctx.curve.saturated or queue_share >= QUEUE_DOMINANT_SHARE or shed > 0
    if headroom and not saturated:
        return "healthy", [
            f"at {at} {objective.percentile} {_ms(latency)} is {1 - latency / objective.latency_s:.0%} "
            f"below the objective {_ms(objective.latency_s)}, errors {peak.error_ratio:.2%}",
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
        and not _full_batches(peak)
        and rest_share < REST_DOMINANT_SHARE
    ):
        return "compute-bound-cpu", [
            f"at {at} every CPU was busy ({cores}, {busy:.0%}) with batches of {mean_batch:.1f} samples "
            f"(not full, so the batch limit is not what holds them back); {shares}",
            saturation,
        ]
    if queue_share >= QUEUE_DOMINANT_SHARE:
        if not batching_enabled(peak):
            return "queueing", [
                f"at {at} {shares}; batching is off, so every request is computed alone",
                saturation,
            ]
        if _full_batches(peak):
            return "queueing", [
                f"at {at} {shares}; batches were full ({mean_batch:.1f} of max "
                f"{peak.server_settings.max_batch_size} samples)",
                saturation,
            ]
        return "queueing", [f"at {at} {shares}; CPUs were not all busy ({cores})", saturation]
    if rest_share >= REST_DOMINANT_SHARE:
        reasons = [
            f"at {at} {shares}: server overhead {_ms(parts.server_overhead_s)}, outside the server "
            f"{_ms(parts.outside_server_s)}",
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


def _saturation_sentence(ctx: Context, peak: StepRecord, shed: float) -> str:
    parts = []
    if ctx.curve.knee_step_index is not None:
        knee = next(p for p in ctx.curve.points if p.step_index == ctx.curve.knee_step_index)
        parts.append(
            f"latency outgrew throughput after step {knee.step_index} "
            f"({knee.inferences_per_s:.0f} inferences/s, {ctx.objective.percentile} {_ms(knee.latency_s)})"
        )
    if shed:
        parts.append(f"{shed:.0f} requests were shed (queue full)")
    latency = latency_at(peak, ctx.objective.percentile)
    met = "meets" if latency <= ctx.objective.latency_s else "misses"
    parts.append(
        f"{ctx.objective.percentile} {_ms(latency)} {met} the objective {_ms(ctx.objective.latency_s)}"
    )
    return "; ".join(parts)


def _recommend(
    ctx: Context, verdict: Verdict, peak: StepRecord, parts: Decomposition, util: UtilizationPoint
) -> list[str]:
    fit = ctx.batching.fits.get(peak.model)
    settings = peak.server_settings
    delay_s = (settings.max_queue_delay_us or 0) / 1e6
    out: list[str] = []
    kind = verdict.kind
    if kind == "generator-bound":
        cores = peak.cpu.generator_cores or 1.0
        workers = max(2, math.ceil(cores) + 1)
        out.append(
            f"add load generator processes (servescope load/campaign --workers {workers}) or run them on "
            f"another machine: at {peak.requests_per_s:.0f} req/s the generator used {cores:.2f} cores; "
            f"re-measure before drawing conclusions about the server"
        )
    if kind == "batching-delay-bound" or any(
        f.series == ctx.curve.series for f in ctx.batching.delay_findings
    ):
        finding = next((f for f in ctx.batching.delay_findings if f.series == ctx.curve.series), None)
        if finding is not None:
            out.append(
                f"lower max_queue_delay_us from {finding.max_queue_delay_us} to {finding.suggested_delay_us} "
                f"(--max-queue-delay-us {finding.suggested_delay_us}): at step {finding.step_index} "
                f"({finding.load}) the window "
                f"added {_ms(finding.batching_delay_s)} ({finding.share:.0%} of the "
                f"{_ms(finding.client_mean_s)} "
                f"mean latency) for batches of {finding.batch_size_mean:.2f} samples; expect the mean near "
                f"{_ms(finding.client_mean_s - finding.saving_s)}"
            )
    if kind == "queueing":
        out.extend(_queueing_advice(ctx, peak, parts, util, fit))
    if kind in ("compute-bound-cpu", "compute-bound-gpu", "queueing", "host-bound") and fit is not None:
        advice = _bigger_batch_advice(ctx, peak, fit, delay_s)
        if advice and advice not in out:
            out.append(advice)
    if kind == "host-bound":
        out.append(
            f"send several samples per request (client batch {max(8, peak.client_batch_size * 4)} instead of "
            f"{peak.client_batch_size}) to cut per-request host work, and give the server more cores or move "
            f"the load generator off this host (it used {util.generator_cores or 0:.2f} cores)"
        )
    if kind == "compute-bound-gpu":
        gpu = util.gpu_utilization or 0.0
        out.append(
            f"the GPU is {gpu:.0%} busy at {peak.inferences_per_s:.0f} inferences/s: more throughput needs "
            f"another GPU replica (about {2 * peak.inferences_per_s:.0f} inferences/s for two) or a lighter "
            f"variant"
        )
    if kind == "serialization-bound":
        out.append(
            f"{_ms(parts.rest_s)} of the {_ms(parts.client_mean_s)} mean latency is outside queue and "
            f"compute (server overhead {_ms(parts.server_overhead_s)}, outside the server "
            f"{_ms(parts.outside_server_s)}):"
            f" send several samples per request (client batch {max(8, peak.client_batch_size * 4)} spreads "
            f"that cost over {max(8, peak.client_batch_size * 4)} samples), keep tensors in "
            f"raw_input_contents, and run the client close to the server"
        )
    if kind == "undetermined":
        out.append(
            "record the server's metrics: run the campaign with --metrics-url (or against an embedded "
            "server), or analyse with --prometheus-url"
        )
    out.extend(_variant_advice(ctx, peak))
    if kind == "healthy":
        curve = ctx.curve
        if curve.best_inferences_per_s is not None:
            next_step = (
                "test higher load to find the knee"
                if curve.knee_step_index is None
                else "stay below the knee"
            )
            out.append(
                f"up to {curve.best_inferences_per_s:.0f} inferences/s met {ctx.objective.label} "
                f"(step {curve.best_step_index}); the highest load tested was {describe_load(peak)}: "
                f"{next_step}"
            )
        else:
            out.append(
                f"{peak.inferences_per_s:.0f} inferences/s at {describe_load(peak)} met "
                f"{ctx.objective.label}, but step {peak.step_index} is flagged (see Consistency): "
                "re-measure with longer steps, then test higher load to find the knee"
            )
    return out


def _queueing_advice(
    ctx: Context, peak: StepRecord, parts: Decomposition, util: UtilizationPoint, fit: BatchFit | None
) -> list[str]:
    settings = peak.server_settings
    compute_s = parts.compute_s or 0.0
    if not batching_enabled(peak):
        # Enough room to combine every outstanding request (users x samples per request), up to 64.
        outstanding = (peak.load.users or 1) * max(peak.client_batch_size, 1)
        size = min(64, 1 << max(0, math.ceil(math.log2(max(outstanding, 2)))))
        delay_us = suggest_delay_us(fit, peak, ctx.objective.latency_s, cap_at_current=False)
        text = (
            f"enable dynamic batching (--max-batch-size {size} --max-queue-delay-us {delay_us}): with "
            f"batching off each request computes alone in {_ms(compute_s)}, so one instance serves at most "
            f"{1 / compute_s if compute_s else float('nan'):.0f} req/s and queueing took "
            f"{_ms(parts.queueing_s)} of the {_ms(parts.client_mean_s)} mean latency"
        )
        if fit is not None and fit.per_sample_s > 0:
            gain = fit.samples_per_s(size) / fit.samples_per_s(1)
            text += f"; the compute fit predicts {gain:.1f}x the capacity at batch {size}"
        return [text]
    if _full_batches(peak):
        return []  # the bigger-batch advice covers it
    busy = util.host_busy_fraction
    if busy is not None and busy < HOST_BUSY and util.server_cores is not None and util.machine_cores:
        instances = (settings.instances or 1) + 1
        return [
            f"add an instance (--instances {instances}): the host CPUs were only {busy:.0%} busy "
            f"(server {util.server_cores:.2f} of {util.machine_cores} cores) while queueing took "
            f"{_ms(parts.queueing_s)} of the {_ms(parts.client_mean_s)} mean latency"
        ]
    return []


def _bigger_batch_advice(ctx: Context, peak: StepRecord, fit: BatchFit, delay_s: float) -> str | None:
    if not batching_enabled(peak) or not peak.server_settings.max_batch_size:
        return None
    current = peak.server_settings.max_batch_size
    if not _full_batches(peak):
        return None
    suggested = suggest_max_batch(fit, ctx.objective.latency_s, delay_s)
    if suggested is None or suggested <= current:
        stop = fit.stop_paying_batch
        why = (
            f"larger batches would break {ctx.objective.label}"
            if suggested is not None
            else f"no batch size meets {ctx.objective.label}"
        )
        return (
            f"keep max_batch_size {current}: batches are full, but the fit "
            f"({_ms(fit.fixed_s)} + {_ms(fit.per_sample_s)}/sample) says "
            f"{why}"
            f"{'' if stop is None else f'; batching stops paying beyond ~{stop:.0f}'}"
        )
    gain = fit.samples_per_s(suggested) / fit.samples_per_s(current) - 1
    worst_s = delay_s + 2 * fit.compute_s(suggested)
    return (
        f"raise max_batch_size to {suggested} (--max-batch-size {suggested}): batches are full at {current}; "
        f"the fit ({_ms(fit.fixed_s)} + {_ms(fit.per_sample_s)}/sample) predicts {gain:+.0%} throughput "
        f"with a worst case near {_ms(worst_s)} (window + two batches) against {ctx.objective.label}"
    )


def _variant_advice(ctx: Context, peak: StepRecord) -> list[str]:
    configuration = configuration_of(peak)
    out = []
    for comparison in ctx.comparisons:
        if comparison.configuration != configuration:
            continue
        mine = next((r for r in comparison.rows if r.model == peak.model), None)
        if mine is None:
            continue
        for row in comparison.rows:
            if row.model == peak.model:
                continue
            if row.best_inferences_per_s and mine.best_inferences_per_s:
                ratio = row.best_inferences_per_s / mine.best_inferences_per_s
                basis = (
                    f"{row.best_inferences_per_s:.0f} vs {mine.best_inferences_per_s:.0f} inferences/s "
                    f"within {ctx.objective.label}"
                )
            elif row.inferences_per_s_at_load and mine.inferences_per_s_at_load:
                # No trusted step met the objective: compare at the highest load both were measured at.
                ratio = row.inferences_per_s_at_load / mine.inferences_per_s_at_load
                basis = (
                    f"{row.inferences_per_s_at_load:.0f} vs {mine.inferences_per_s_at_load:.0f} inferences/s "
                    f"at load {comparison.common_load:g}; no trusted step met the objective, so compared at "
                    "equal load"
                )
            else:
                continue
            if ratio < BETTER_VARIANT_RATIO:
                continue
            accuracy = (
                f"{(row.accuracy - mine.accuracy) * 100:+.2f} accuracy points"
                if row.accuracy is not None and mine.accuracy is not None
                else "an accuracy change the metadata does not record"
            )
            size = (
                f", {mine.file_size_bytes / row.file_size_bytes:.1f}x smaller"
                if row.file_size_bytes and mine.file_size_bytes and row.file_size_bytes < mine.file_size_bytes
                else ""
            )
            out.append(
                f"{row.model} ({row.precision}) gives {ratio:.2f}x the throughput ({basis}) "
                f"for {accuracy}{size}"
            )
    return out
