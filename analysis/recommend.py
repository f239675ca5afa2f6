"""Recommendations that carry numbers, as pieces: each returns its sentences for a Situation, or nothing
when it does not apply. Each verdict kind (rules.py) composes its recommendations from these."""

from __future__ import annotations

import math

from analysis.batching import suggest_delay_us, suggest_max_batch
from analysis.context import Situation
from analysis.fmt import ms
from analysis.quantization import configuration_of
from analysis.steps import batching_enabled, describe_load, full_batches
from analysis.thresholds import BETTER_VARIANT_RATIO, HOST_BUSY, TRANSPORT_SAVING_SHARE


def more_generators(s: Situation) -> list[str]:
    peak = s.peak
    cores = peak.cpu.generator_cores or 1.0
    workers = max(2, math.ceil(cores) + 1)
    return [
        f"add load generator processes (load.workers: {workers} in the campaign file, or servescope load "
        f"--workers {workers}) or run them on another machine: at {peak.requests_per_s:.0f} req/s the "
        f"generator used {cores:.2f} cores; re-measure before drawing conclusions about the server"
    ]


def shorter_window(s: Situation) -> list[str]:
    """The batching analysis found the window costing latency at this series' lowest load."""
    finding = next((f for f in s.ctx.batching.delay_findings if f.series == s.ctx.curve.series), None)
    if finding is None:
        return []
    return [
        f"lower max_queue_delay_us from {finding.max_queue_delay_us} to {finding.suggested_delay_us} "
        f"(--max-queue-delay-us {finding.suggested_delay_us}): at step {finding.step_index} "
        f"({finding.load}) the window added {ms(finding.batching_delay_s)} ({finding.share:.0%} of the "
        f"{ms(finding.client_mean_s)} mean latency) for batches of {finding.batch_size_mean:.2f} "
        f"samples; expect the mean near {ms(finding.client_mean_s - finding.saving_s)}"
    ]


def shorter_window_or_batching_off(s: Situation) -> list[str]:
    """A shorter window when one keeps batching; else batching cannot pay at this load."""
    return shorter_window(s) or batching_off_at_this_load(s)


def record_metrics(s: Situation) -> list[str]:
    return [
        "record the server's metrics: run the campaign with --metrics-url (or against an embedded server), "
        "or analyse with --prometheus-url"
    ]


def batching_off_at_this_load(s: Situation) -> list[str]:
    """The window dominates but is already about one compute time: no shorter window keeps batching."""
    if s.parts.batching_delay_s is None:
        return []
    suggested_us = suggest_delay_us(s.fit, s.peak, s.objective.latency_s)
    return [
        f"the window ({s.peak.server_settings.max_queue_delay_us} us) is about one compute time "
        f"({suggested_us} us), yet batches stay near one request: at this load batching cannot pay; "
        f"switch it off (--no-batching) to save about {ms(s.parts.batching_delay_s)} per request"
    ]


def queueing(s: Situation) -> list[str]:
    peak, parts, util = s.peak, s.parts, s.util
    compute_s = parts.compute_s or 0.0
    if not batching_enabled(peak):
        # Enough room to combine every outstanding request (users x samples per request), up to 64.
        outstanding = (peak.load.users or 1) * max(peak.client_batch_size, 1)
        size = min(64, 1 << max(0, math.ceil(math.log2(max(outstanding, 2)))))
        delay_us = suggest_delay_us(s.fit, peak, s.objective.latency_s, cap_at_current=False)
        text = (
            f"enable dynamic batching (--max-batch-size {size} --max-queue-delay-us {delay_us}): with "
            f"batching off each request computes alone in {ms(compute_s)}, so one instance serves at most "
            f"{1 / compute_s if compute_s else float('nan'):.0f} req/s and queueing took "
            f"{ms(parts.queueing_s)} of the {ms(parts.client_mean_s)} mean latency"
        )
        if s.fit is not None and s.fit.per_sample_s > 0:
            gain = s.fit.samples_per_s(size) / s.fit.samples_per_s(1)
            text += f"; the compute fit predicts {gain:.1f}x the capacity at batch {size}"
        return [text]
    if full_batches(peak):
        return []  # the bigger-batch advice covers it
    busy = util.host_busy_fraction
    if busy is not None and busy < HOST_BUSY and util.server_cores is not None and util.machine_cores:
        instances = (peak.server_settings.instances or 1) + 1
        return [
            f"add an instance (--instances {instances}): the host CPUs were only {busy:.0%} busy "
            f"(server {util.server_cores:.2f} of {util.machine_cores} cores) while queueing took "
            f"{ms(parts.queueing_s)} of the {ms(parts.client_mean_s)} mean latency"
        ]
    return []


def bigger_batches(s: Situation) -> list[str]:
    peak, fit = s.peak, s.fit
    if fit is None or not batching_enabled(peak) or not peak.server_settings.max_batch_size:
        return []
    if not full_batches(peak):
        return []
    current = peak.server_settings.max_batch_size
    delay_s = (peak.server_settings.max_queue_delay_us or 0) / 1e6
    objective = s.objective
    suggested = suggest_max_batch(fit, objective.latency_s, delay_s)
    if suggested is None or suggested <= current:
        stop = fit.stop_paying_batch
        why = (
            f"larger batches would break {objective.label}"
            if suggested is not None
            else f"no batch size meets {objective.label}"
        )
        return [
            f"keep max_batch_size {current}: batches are full, but the fit "
            f"({ms(fit.fixed_s)} + {ms(fit.per_sample_s)}/sample) says {why}"
            f"{'' if stop is None else f'; batching stops paying beyond ~{stop:.0f}'}"
        ]
    gain = fit.samples_per_s(suggested) / fit.samples_per_s(current) - 1
    worst_s = delay_s + 2 * fit.compute_s(suggested)
    return [
        f"raise max_batch_size to {suggested} (--max-batch-size {suggested}): batches are full at {current}; "
        f"the fit ({ms(fit.fixed_s)} + {ms(fit.per_sample_s)}/sample) predicts {gain:+.0%} throughput "
        f"with a worst case near {ms(worst_s)} (window + two batches) against {objective.label}"
    ]


def less_host_work(s: Situation) -> list[str]:
    batch = s.peak.client_batch_size
    return [
        f"send several samples per request (client batch {max(8, batch * 4)} instead of {batch}) to cut "
        f"per-request host work, and give the server more cores or move the load generator off this host "
        f"(it used {s.util.generator_cores or 0:.2f} cores)"
    ]


def gpu_replica(s: Situation) -> list[str]:
    gpu = s.util.gpu_utilization or 0.0
    rate = s.peak.inferences_per_s
    return [
        f"the GPU is {gpu:.0%} busy at {rate:.0f} inferences/s: more throughput needs another GPU replica "
        f"(about {2 * rate:.0f} inferences/s for two) or a lighter variant"
    ]


def cheaper_transport(s: Situation) -> list[str]:
    parts, batch = s.parts, max(8, s.peak.client_batch_size * 4)
    return [
        f"{ms(parts.rest_s)} of the {ms(parts.client_mean_s)} mean latency is outside queue and "
        f"compute (server overhead {ms(parts.server_overhead_s)}, outside the server "
        f"{ms(parts.outside_server_s)}): send several samples per request (client batch {batch} spreads "
        f"that cost over {batch} samples), keep tensors in raw_input_contents, and run the client close to "
        "the server",
        *other_transport(s),
    ]


_TRANSPORTS = {
    "grpc": ("unary gRPC", "--protocol grpc, load.protocol: grpc"),
    "grpc_stream": (
        "gRPC streaming",
        "one ModelStreamInfer stream per client: servescope load --streaming, load.streaming: true",
    ),
    "http": ("REST", "--protocol http, load.protocol: http"),
}


def other_transport(s: Situation) -> list[str]:
    """The transport probe (campaign.json) measured another way to call the server clearly cheaper per
    request than the one the steps used: name it, with the measured figures."""
    probe = s.ctx.transport
    if probe is None or probe.used not in probe.p50_s:
        return []
    used_s = probe.p50_s[probe.used]
    best = min(probe.p50_s, key=lambda name: probe.p50_s[name])
    saving_s = used_s - probe.p50_s[best]
    if best == probe.used or best not in _TRANSPORTS or saving_s < TRANSPORT_SAVING_SHARE * used_s:
        return []
    used = _TRANSPORTS.get(probe.used, (probe.used, ""))[0]
    name, how = _TRANSPORTS[best]
    return [
        f"switch to {name} ({how}): the transport probe measured {ms(probe.p50_s[best])} per request "
        f"against {ms(used_s)} over {used} (p50 of {probe.requests} sequential batch-1 requests each), "
        f"{ms(saving_s)} ({saving_s / used_s:.0%}) less per request"
    ]


def headroom(s: Situation) -> list[str]:
    curve, peak, objective = s.ctx.curve, s.peak, s.objective
    if curve.best_inferences_per_s is None:
        return [
            f"{peak.inferences_per_s:.0f} inferences/s at {describe_load(peak)} met {objective.label}, but "
            f"step {peak.step_index} is flagged (see Consistency): re-measure with longer steps, then test "
            "higher load to find the knee"
        ]
    saturated = curve.knee_step_index is not None
    next_step = "stay below the knee" if saturated else "test higher load to find the knee"
    return [
        f"up to {curve.best_inferences_per_s:.0f} inferences/s met {objective.label} "
        f"(step {curve.best_step_index}); the highest load tested was {describe_load(peak)}: {next_step}"
    ]


def variants(s: Situation) -> list[str]:
    """Another precision variant under the same configuration that is clearly faster."""
    peak, objective = s.peak, s.objective
    configuration = configuration_of(peak)
    out = []
    for comparison in s.ctx.comparisons:
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
                    f"within {objective.label}"
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
