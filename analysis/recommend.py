"""Recommendations that carry numbers, as pieces: each returns its Recommendations for a Situation, or
nothing when it does not apply. Each verdict kind (rules.py) composes its recommendations from these.
What a Recommendation holds (its Change and Prediction): recommendation.py. A server setting's flag, in
the text and in the change, comes from its definition in servescope/settings.py.
"""

from __future__ import annotations

import math

from analysis.batching import suggest_delay_us, suggest_max_batch
from analysis.context import Situation
from analysis.fmt import ms
from analysis.quantization import configuration_of
from analysis.recommendation import (
    TRANSPORTS,
    Change,
    Recommendation,
    batch_size_for,
    batching_gain,
    cap,
    predict,
    server_change,
)
from analysis.recommendation import Prediction as Prediction  # the reports take the types from here too
from analysis.steps import batching_enabled, describe_load, full_batches
from analysis.thresholds import BATCH_GAIN_MIN, BETTER_VARIANT_RATIO, HOST_BUSY, TRANSPORT_SAVING_SHARE
from servescope import settings

# ---- The load generator and the machine ------------------------------------------------------------


def more_generators(s: Situation) -> list[Recommendation]:
    peak = s.peak
    cores = peak.cpu.generator_cores or 1.0
    workers = max(2, math.ceil(cores) + 1)
    return [
        Recommendation(
            f"add load generator processes (load.workers: {workers} in the campaign file, or servescope load "
            f"--workers {workers}) or run them on another machine: at {peak.requests_per_s:.0f} req/s the "
            f"generator used {cores:.2f} cores; re-measure before drawing conclusions about the server",
            Change("load.workers", workers, peak.load.workers, "campaign", f"--workers {workers}"),
        )
    ]


def free_the_generator(s: Situation) -> list[Recommendation]:
    """The generator waited for a CPU: give it cores of its own."""
    cpu = s.peak.cpu
    wait = cpu.generator_wait_share or 0.0
    return [
        Recommendation(
            f"give the load generator cores of its own (another machine, or `taskset` it away from other "
            f"work): its threads waited for a CPU {wait:.0%} of the CPU time they asked for while it used "
            f"only {cpu.generator_cores or 0:.2f} cores, and other processes used {cpu.other_cores or 0:.2f} "
            "cores; the latency it measured includes that wait, so nothing here describes the server"
        )
    ]


def quiet_machine(s: Situation) -> list[Recommendation]:
    cpu = s.peak.cpu
    return [
        Recommendation(
            "re-measure on a quiet machine (or pin the server with `taskset` to cores nothing else "
            f"uses): other processes used {cpu.other_cores or 0:.2f} cores during the step and the server's "
            f"event loop waited for a CPU {cpu.server_loop_wait_share or 0:.0%} of it"
        )
    ]


# ---- The batch window ------------------------------------------------------------------------------


def shorter_window(s: Situation) -> list[Recommendation]:
    """The batching analysis found the window costing latency at this series' lowest load."""
    finding = next((f for f in s.ctx.batching.delay_findings if f.series == s.ctx.curve.series), None)
    if finding is None:
        return []
    step = next(st for st in s.ctx.steps if st.step_index == finding.step_index)
    expected = finding.client_mean_s - finding.saving_s
    basis = (
        "the adaptive delay skips the shorter window: no request is expected within it"
        if finding.skipped
        else "the window's share of the wait comes off"
    )
    change = server_change(
        settings.MAX_QUEUE_DELAY_US, finding.suggested_delay_us, finding.max_queue_delay_us
    )
    return [
        Recommendation(
            f"lower max_queue_delay_us from {finding.max_queue_delay_us} to {finding.suggested_delay_us} "
            f"({change.flag}): at step {finding.step_index} "
            f"({finding.load}) the window added {ms(finding.batching_delay_s)} ({finding.share:.0%} of the "
            f"{ms(finding.client_mean_s)} mean latency) for batches of {finding.batch_size_mean:.2f} "
            f"samples; expect the mean near {ms(expected)}",
            change,
            predict(s, "mean_latency_s", expected, basis, step),
        )
    ]


def shorter_window_or_batching_off(s: Situation) -> list[Recommendation]:
    """A shorter window when one keeps batching; else batching cannot pay at this load."""
    return shorter_window(s) or batching_off_at_this_load(s)


def batching_off_at_this_load(s: Situation) -> list[Recommendation]:
    """The window dominates but is already about one compute time: no shorter window keeps batching."""
    if s.parts.batching_delay_s is None:
        return []
    suggested_us = suggest_delay_us(s.fit, s.peak, s.objective.latency_s)
    expected = s.parts.client_mean_s - s.parts.batching_delay_s
    change = server_change(settings.BATCHING, False, True)
    return [
        Recommendation(
            f"the window ({s.peak.server_settings.max_queue_delay_us} us) is about one compute time "
            f"({suggested_us} us), yet batches stay near one request: at this load batching cannot pay; "
            f"switch it off ({change.flag}) to save about {ms(s.parts.batching_delay_s)} per request",
            change,
            predict(s, "mean_latency_s", expected, "the batch window's wait comes off"),
        )
    ]


def record_metrics(s: Situation) -> list[Recommendation]:
    return [
        Recommendation(
            "record the server's metrics: run the campaign with --metrics-url (or against an embedded "
            "server), or analyse with --prometheus-url"
        )
    ]


# ---- Queueing, batching and compute ----------------------------------------------------------------


def queueing(s: Situation) -> list[Recommendation]:
    peak, parts, util = s.peak, s.parts, s.util
    compute_s = parts.compute_s or 0.0
    if not batching_enabled(peak):
        outstanding = (peak.load.users or 1) * max(peak.client_batch_size, 1)
        size, why = batch_size_for(s, outstanding)
        delay_us = suggest_delay_us(s.fit, peak, s.objective.latency_s, cap_at_current=False)
        also = {settings.MAX_BATCH_SIZE.name: size, settings.MAX_QUEUE_DELAY_US.name: delay_us}
        change = server_change(settings.BATCHING, True, False, also)
        text = (
            f"enable dynamic batching ({change.flag}): with "
            f"batching off each request computes alone in {ms(compute_s)}, so one instance serves at most "
            f"{1 / compute_s if compute_s else float('nan'):.0f} req/s and queueing took "
            f"{ms(parts.queueing_s)} of the {ms(parts.client_mean_s)} mean latency"
        )
        gain, basis, saved_s, said = batching_gain(s, size, outstanding)
        text += said
        if why:
            text += f" ({why})"
        prediction = None
        if gain is not None and gain > 1:
            expected, capped = cap(s, peak.requests_per_s * gain, saved_s)
            prediction = predict(s, "requests_per_s", expected, "; ".join(p for p in (basis, capped) if p))
        return [Recommendation(text, change, prediction)]
    if full_batches(peak):
        return []  # the bigger-batch advice covers it
    busy = util.host_busy_fraction
    if busy is not None and busy < HOST_BUSY and util.server_cores is not None and util.machine_cores:
        instances = (peak.server_settings.instances or 1) + 1
        expected, capped = cap(s, peak.requests_per_s * instances / (instances - 1))
        change = server_change(settings.INSTANCES, instances, instances - 1)
        return [
            Recommendation(
                f"add an instance ({change.flag}): the host CPUs were only {busy:.0%} busy "
                f"(server {util.server_cores:.2f} of {util.machine_cores} cores) while queueing took "
                f"{ms(parts.queueing_s)} of the {ms(parts.client_mean_s)} mean latency",
                change,
                predict(
                    s, "requests_per_s", expected, "one more compute slot" + (f"; {capped}" if capped else "")
                ),
            )
        ]
    return []


def bigger_batches(s: Situation) -> list[Recommendation]:
    peak = s.peak
    if not batching_enabled(peak) or not peak.server_settings.max_batch_size or not full_batches(peak):
        return []
    current = peak.server_settings.max_batch_size
    curve = s.batch_curve
    if curve is not None and curve.samples_per_s(current):
        best = curve.best_size()
        if best is not None and best <= current:
            return [
                Recommendation(
                    f"keep max_batch_size {current}: batches are full, but {curve.basis} says "
                    f"throughput per sample stops improving by {BATCH_GAIN_MIN:.0%} beyond batch {best}; "
                    "more throughput needs more compute (instances, workers, a lighter variant)"
                )
            ]
    fit = s.fit
    if fit is None:
        return []
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
            Recommendation(
                f"keep max_batch_size {current}: batches are full, but the fit "
                f"({ms(fit.fixed_s)} + {ms(fit.per_sample_s)}/sample) says {why}"
                f"{'' if stop is None else f'; batching stops paying beyond ~{stop:.0f}'}"
            )
        ]
    gain = fit.samples_per_s(suggested) / fit.samples_per_s(current) - 1
    worst_s = delay_s + 2 * fit.compute_s(suggested)
    expected, capped = cap(s, peak.requests_per_s * (1 + gain))
    change = server_change(settings.MAX_BATCH_SIZE, suggested, current)
    return [
        Recommendation(
            f"raise max_batch_size to {suggested} ({change.flag}): batches are full at "
            f"{current}; the fit ({ms(fit.fixed_s)} + {ms(fit.per_sample_s)}/sample) predicts {gain:+.0%} "
            f"throughput with a worst case near {ms(worst_s)} (window + two batches) against "
            f"{objective.label}",
            change,
            predict(
                s, "requests_per_s", expected, "the linear compute fit" + (f"; {capped}" if capped else "")
            ),
        )
    ]


# ---- The front end ---------------------------------------------------------------------------------


def more_workers(s: Situation) -> list[Recommendation]:
    """More event loops, where the cores allow them: never more workers than cores, since loops beyond
    the cores only take turns on them."""
    cores = s.available_cores or 1
    workers = s.workers
    target = min(max(workers + 1, cores // 2 if cores >= 4 else workers + 1), cores, 16)
    if target <= workers:
        return []
    limit = s.machine_rps
    if limit is not None and limit < 1.1 * s.peak.requests_per_s:
        return []  # the cores are used up: another event loop would have no CPU to run on
    loop = (
        f"{s.loop_cores:.2f} cores" if s.loop_cores is not None else f"a mean timer lag of {ms(s.loop_lag_s)}"
    )
    expected, capped = cap(s, s.peak.requests_per_s * target / workers)
    basis = f"{target} event loops instead of {workers}" + (f"; {capped}" if capped else "")
    change = server_change(settings.WORKERS, target, workers)
    text = (
        f"run more server workers ({change.flag}): the busiest event loop used {loop} at "
        f"{s.peak.requests_per_s:.0f} req/s; {target} workers could answer about {expected:.0f} req/s"
    )
    if capped:
        text += f" ({capped})"
    return [
        Recommendation(
            text,
            change,
            predict(s, "requests_per_s", expected, basis),
        )
    ]


def client_batching(s: Situation) -> list[Recommendation]:
    """Several samples per request: the front end's cost is per request, compute's per sample."""
    peak = s.peak
    batch = peak.client_batch_size
    target = max(8, batch * 4)
    limit = peak.server_settings.max_batch_size or target
    target = min(target, limit)
    if target <= batch:
        return []
    expected = peak.requests_per_s * target  # samples/s if requests/s hold
    basis = f"requests/s held, {target} samples each"
    curve = s.batch_curve
    compute = curve.peak() if curve is not None else None
    if curve is not None and compute is not None:
        ceiling = compute[1] * s.slots
        if ceiling < expected:
            expected, basis = (
                ceiling,
                f"{curve.basis}'s ceiling, {compute[1]:.0f} samples/s per slot x {s.slots}",
            )
    return [
        Recommendation(
            f"send several samples per request (client batch {target} instead of {batch}): the server's cost "
            f"per request (event loop, gRPC) is spent once per request; expect about {expected:.0f} "
            f"inferences/s ({basis})",
            Change("client_batch_size", target, batch, "client", f"--batch-size {target}"),
            predict(s, "inferences_per_s", expected, basis),
        )
    ]


def less_host_work(s: Situation) -> list[Recommendation]:
    batch = s.peak.client_batch_size
    return [
        Recommendation(
            f"send several samples per request (client batch {max(8, batch * 4)} instead of {batch}) to cut "
            f"per-request host work, and give the server more cores or move the load generator off this host "
            f"(it used {s.util.generator_cores or 0:.2f} cores)",
            Change(
                "client_batch_size", max(8, batch * 4), batch, "client", f"--batch-size {max(8, batch * 4)}"
            ),
        )
    ]


def gpu_replica(s: Situation) -> list[Recommendation]:
    gpu = s.util.gpu_utilization or 0.0
    rate = s.peak.inferences_per_s
    return [
        Recommendation(
            f"the GPU is {gpu:.0%} busy at {rate:.0f} inferences/s: more throughput needs another GPU "
            f"replica (about {2 * rate:.0f} inferences/s for two) or a lighter variant"
        )
    ]


def cheaper_transport(s: Situation) -> list[Recommendation]:
    parts, batch = s.parts, max(8, s.peak.client_batch_size * 4)
    where = "the network to a remote server" if not s.ctx.loopback else f"{s.request_bytes} bytes per request"
    return [
        Recommendation(
            f"{ms(parts.rest_s)} of the {ms(parts.client_mean_s)} mean latency is outside queue and "
            f"compute (server overhead {ms(parts.server_overhead_s)}, outside the server "
            f"{ms(parts.outside_server_s)}; {where}): send several samples per request (client batch {batch} "
            f"spreads that cost over {batch} samples), keep tensors in raw_input_contents, and run the "
            "client close to the server",
            Change("client_batch_size", batch, s.peak.client_batch_size, "client", f"--batch-size {batch}"),
        ),
        *other_transport(s),
    ]


def other_transport(s: Situation) -> list[Recommendation]:
    """The transport probe (campaign.json) measured another way to call the server clearly cheaper per
    request than the one the steps used: name it, with the measured figures."""
    probe = s.ctx.transport
    if probe is None or probe.used not in probe.p50_s:
        return []
    used_s = probe.p50_s[probe.used]
    best = min(probe.p50_s, key=lambda name: probe.p50_s[name])
    saving_s = used_s - probe.p50_s[best]
    if best == probe.used or best not in TRANSPORTS or saving_s < TRANSPORT_SAVING_SHARE * used_s:
        return []
    used = TRANSPORTS[probe.used][0] if probe.used in TRANSPORTS else probe.used
    name, how, setting, value, flag = TRANSPORTS[best]
    current = (probe.used == "grpc_stream") if setting == "streaming" else probe.used.split("_")[0]
    change = Change(setting, value, current, "client", flag)
    return [
        Recommendation(
            f"switch to {name} ({how}): the transport probe measured {ms(probe.p50_s[best])} per request "
            f"against {ms(used_s)} over {used} (p50 of {probe.requests} sequential batch-1 requests each), "
            f"{ms(saving_s)} ({saving_s / used_s:.0%}) less per request",
            change,
        )
    ]


def headroom(s: Situation) -> list[Recommendation]:
    curve, peak, objective = s.ctx.curve, s.peak, s.objective
    if curve.best_inferences_per_s is None:
        return [
            Recommendation(
                f"{peak.inferences_per_s:.0f} inferences/s at {describe_load(peak)} met "
                f"{objective.label}, but step {peak.step_index} is flagged (see Consistency): re-measure "
                "with longer steps, then test higher load to find the knee"
            )
        ]
    saturated = curve.knee_step_index is not None
    next_step = "stay below the knee" if saturated else "test higher load to find the knee"
    return [
        Recommendation(
            f"up to {curve.best_inferences_per_s:.0f} inferences/s met {objective.label} "
            f"(step {curve.best_step_index}); the highest load tested was {describe_load(peak)}: {next_step}"
        )
    ]


def variants(s: Situation) -> list[Recommendation]:
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
                Recommendation(
                    f"{row.model} ({row.precision}) gives {ratio:.2f}x the throughput ({basis}) "
                    f"for {accuracy}{size}",
                    Change("model", row.model, peak.model, "campaign"),
                    predict(s, "inferences_per_s", peak.inferences_per_s * ratio, basis),
                )
            )
    return out
