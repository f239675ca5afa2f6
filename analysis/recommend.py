"""Recommendations that carry numbers, for a verdict already drawn (verdict.py)."""

from __future__ import annotations

import math

from analysis.batching import BatchFit, suggest_delay_us, suggest_max_batch
from analysis.context import HOST_BUSY, Context, full_batches, ms
from analysis.decompose import Decomposition, batching_enabled
from analysis.load import describe_load
from analysis.quantization import configuration_of
from analysis.utilization import UtilizationPoint
from servescope.results import StepRecord

BETTER_VARIANT_RATIO = 1.1  # recommend another precision when it is at least 10% faster


def recommend(
    ctx: Context, kind: str, peak: StepRecord, parts: Decomposition, util: UtilizationPoint
) -> list[str]:
    fit = ctx.batching.fits.get(peak.model)
    settings = peak.server_settings
    delay_s = (settings.max_queue_delay_us or 0) / 1e6
    out: list[str] = []

    if kind == "generator-bound":
        cores = peak.cpu.generator_cores or 1.0
        workers = max(2, math.ceil(cores) + 1)
        out.append(
            f"add load generator processes (load.workers: {workers} in the campaign file, or servescope load "
            f"--workers {workers}) or run them on another machine: at {peak.requests_per_s:.0f} req/s the "
            f"generator used {cores:.2f} cores; re-measure before drawing conclusions about the server"
        )
    finding = next((f for f in ctx.batching.delay_findings if f.series == ctx.curve.series), None)
    if finding is not None:
        out.append(
            f"lower max_queue_delay_us from {finding.max_queue_delay_us} to {finding.suggested_delay_us} "
            f"(--max-queue-delay-us {finding.suggested_delay_us}): at step {finding.step_index} "
            f"({finding.load}) the window added {ms(finding.batching_delay_s)} ({finding.share:.0%} of the "
            f"{ms(finding.client_mean_s)} mean latency) for batches of {finding.batch_size_mean:.2f} "
            f"samples; expect the mean near {ms(finding.client_mean_s - finding.saving_s)}"
        )
    elif kind == "batching-delay-bound" and parts.batching_delay_s is not None:
        # The window dominates at the peak but is already close to one compute time: no shorter window
        # would keep batching, so the load itself is too light to fill batches.
        suggested_us = suggest_delay_us(fit, peak, ctx.objective.latency_s)
        out.append(
            f"the window ({settings.max_queue_delay_us} us) is about one compute time ({suggested_us} us), "
            f"yet batches stay near one request: at this load batching cannot pay; switch it off "
            f"(--no-batching) to save about {ms(parts.batching_delay_s)} per request"
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
            f"{ms(parts.rest_s)} of the {ms(parts.client_mean_s)} mean latency is outside queue and "
            f"compute (server overhead {ms(parts.server_overhead_s)}, outside the server "
            f"{ms(parts.outside_server_s)}):"
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
            f"batching off each request computes alone in {ms(compute_s)}, so one instance serves at most "
            f"{1 / compute_s if compute_s else float('nan'):.0f} req/s and queueing took "
            f"{ms(parts.queueing_s)} of the {ms(parts.client_mean_s)} mean latency"
        )
        if fit is not None and fit.per_sample_s > 0:
            gain = fit.samples_per_s(size) / fit.samples_per_s(1)
            text += f"; the compute fit predicts {gain:.1f}x the capacity at batch {size}"
        return [text]
    if full_batches(peak):
        return []  # the bigger-batch advice covers it
    busy = util.host_busy_fraction
    if busy is not None and busy < HOST_BUSY and util.server_cores is not None and util.machine_cores:
        instances = (settings.instances or 1) + 1
        return [
            f"add an instance (--instances {instances}): the host CPUs were only {busy:.0%} busy "
            f"(server {util.server_cores:.2f} of {util.machine_cores} cores) while queueing took "
            f"{ms(parts.queueing_s)} of the {ms(parts.client_mean_s)} mean latency"
        ]
    return []


def _bigger_batch_advice(ctx: Context, peak: StepRecord, fit: BatchFit, delay_s: float) -> str | None:
    if not batching_enabled(peak) or not peak.server_settings.max_batch_size:
        return None
    current = peak.server_settings.max_batch_size
    if not full_batches(peak):
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
            f"({ms(fit.fixed_s)} + {ms(fit.per_sample_s)}/sample) says "
            f"{why}"
            f"{'' if stop is None else f'; batching stops paying beyond ~{stop:.0f}'}"
        )
    gain = fit.samples_per_s(suggested) / fit.samples_per_s(current) - 1
    worst_s = delay_s + 2 * fit.compute_s(suggested)
    return (
        f"raise max_batch_size to {suggested} (--max-batch-size {suggested}): batches are full at {current}; "
        f"the fit ({ms(fit.fixed_s)} + {ms(fit.per_sample_s)}/sample) predicts {gain:+.0%} throughput "
        f"with a worst case near {ms(worst_s)} (window + two batches) against {ctx.objective.label}"
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
