"""Recommendations that carry numbers, as pieces: each returns its Recommendations for a Situation, or
nothing when it does not apply. Each verdict kind (rules.py) composes its recommendations from these.

A Recommendation is text for people plus, where it changes something, the exact change (a
`servescope serve` setting by its ServeFlags name, or a client or campaign setting) and a prediction:
which figure of the step should move, from what, to what, and on what basis. `servescope tune` applies
the change and checks the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from analysis.batching import suggest_delay_us, suggest_max_batch
from analysis.context import Situation
from analysis.fmt import ms
from analysis.quantization import configuration_of
from analysis.steps import batching_enabled, describe_load, full_batches
from analysis.thresholds import BATCH_GAIN_MIN, BETTER_VARIANT_RATIO, HOST_BUSY, TRANSPORT_SAVING_SHARE


@dataclass
class Change:
    """One setting to change. where: "server" (a ServeFlags field of `servescope serve`), "client" (the
    load client: client_batch_size, connections), or "campaign" (load.workers, model)."""

    setting: str
    value: Any
    current: Any = None
    where: str = "server"
    flag: str | None = None  # the command-line form, e.g. "--max-queue-delay-us 600"
    also: dict[str, Any] = field(
        default_factory=dict
    )  # settings that go with it (enabling batching: its size)

    def settings(self) -> dict[str, Any]:
        """Every setting this change makes, by name."""
        return {self.setting: self.value, **self.also}


@dataclass
class Prediction:
    """What the change should do to one figure of the step it was measured at."""

    figure: str  # "requests_per_s", "inferences_per_s", "mean_latency_s" or "p99_s"
    current: float
    expected: float
    step_index: int
    load: str  # the offered load to re-measure at, e.g. "32 users"
    basis: str  # how `expected` was worked out

    @property
    def ratio(self) -> float:
        return self.expected / self.current if self.current else math.nan


@dataclass
class Recommendation:
    text: str
    change: Change | None = None
    prediction: Prediction | None = None


def _predict(s: Situation, figure: str, expected: float, basis: str, step: Any = None) -> Prediction:
    step = step or s.peak
    current = {
        "requests_per_s": step.requests_per_s,
        "inferences_per_s": step.inferences_per_s,
        "mean_latency_s": step.latency_s.mean if step.latency_s else math.nan,
        "p99_s": step.latency_s.p99 if step.latency_s else math.nan,
    }[figure]
    return Prediction(figure, float(current), float(expected), step.step_index, describe_load(step), basis)


def _cap(s: Situation, rps: float, saved_s: float = 0.0) -> tuple[float, str]:
    """A predicted request rate, capped by what the available cores allow at today's CPU per request
    (less `saved_s` CPU seconds per request that the change saves)."""
    limit = s.machine_rps_saving(saved_s)
    if limit is not None and rps > limit:
        per = "today's CPU per request" + (f" less the {ms(saved_s)} of compute it saves" if saved_s else "")
        return limit, f"capped at {limit:.0f} req/s, what {s.available_cores} cores allow at {per}"
    return rps, ""


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
            f"work): its main thread waited for a CPU {wait:.0%} of the step while it used only "
            f"{cpu.generator_cores or 0:.2f} cores, and other processes used {cpu.other_cores or 0:.2f} "
            "cores; "
            "the latency it measured includes that wait, so nothing here describes the server"
        )
    ]


def quiet_machine(s: Situation) -> list[Recommendation]:
    cpu = s.peak.cpu
    return [
        Recommendation(
            "re-measure on a quiet machine (or pin the server with `taskset` to cores nothing else uses): "
            "other "
            f"processes used {cpu.other_cores or 0:.2f} cores during the step and the server's event loop "
            f"waited for a CPU {cpu.server_loop_wait_share or 0:.0%} of it"
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
    return [
        Recommendation(
            f"lower max_queue_delay_us from {finding.max_queue_delay_us} to {finding.suggested_delay_us} "
            f"(--max-queue-delay-us {finding.suggested_delay_us}): at step {finding.step_index} "
            f"({finding.load}) the window added {ms(finding.batching_delay_s)} ({finding.share:.0%} of the "
            f"{ms(finding.client_mean_s)} mean latency) for batches of {finding.batch_size_mean:.2f} "
            f"samples; expect the mean near {ms(expected)}",
            Change(
                "max_queue_delay_us",
                finding.suggested_delay_us,
                finding.max_queue_delay_us,
                "server",
                f"--max-queue-delay-us {finding.suggested_delay_us}",
            ),
            _predict(s, "mean_latency_s", expected, basis, step),
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
    return [
        Recommendation(
            f"the window ({s.peak.server_settings.max_queue_delay_us} us) is about one compute time "
            f"({suggested_us} us), yet batches stay near one request: at this load batching cannot pay; "
            f"switch it off (--no-batching) to save about {ms(s.parts.batching_delay_s)} per request",
            Change("batching", False, True, "server", "--no-batching"),
            _predict(s, "mean_latency_s", expected, "the batch window's wait comes off"),
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


def _batch_size_for(s: Situation, outstanding: int, limit: int = 64) -> tuple[int, str]:
    """A max_batch_size: the measured curve's best size when there is one, else room for every outstanding
    request (users x samples), as a power of two up to `limit`."""
    curve = s.batch_curve
    best = curve.best_size() if curve is not None else None
    if curve is not None and best is not None and best < curve.largest:
        size = 1 << max(0, math.ceil(math.log2(best)))
        return min(size, limit), (
            f"{curve.basis} by batch size says throughput per sample stops improving by "
            f"{BATCH_GAIN_MIN:.0%} beyond batch {best}"
        )
    size = min(limit, 1 << max(0, math.ceil(math.log2(max(outstanding, 2)))))
    return size, ""


def queueing(s: Situation) -> list[Recommendation]:
    peak, parts, util = s.peak, s.parts, s.util
    compute_s = parts.compute_s or 0.0
    if not batching_enabled(peak):
        outstanding = (peak.load.users or 1) * max(peak.client_batch_size, 1)
        size, why = _batch_size_for(s, outstanding)
        delay_us = suggest_delay_us(s.fit, peak, s.objective.latency_s, cap_at_current=False)
        text = (
            f"enable dynamic batching (--max-batch-size {size} --max-queue-delay-us {delay_us}): with "
            f"batching off each request computes alone in {ms(compute_s)}, so one instance serves at most "
            f"{1 / compute_s if compute_s else float('nan'):.0f} req/s and queueing took "
            f"{ms(parts.queueing_s)} of the {ms(parts.client_mean_s)} mean latency"
        )
        gain, basis, saved_s = None, "", 0.0
        curve = s.batch_curve
        reach = min(size, outstanding)  # the batches this load can form with the new limit
        sizes = [b for b in (curve.points if curve is not None else ()) if b <= reach]
        alone = curve.samples_per_s(1) if curve is not None else None
        if curve is not None and alone and len(sizes) >= 2:
            at = max(sizes)
            rate = curve.samples_per_s(at) or 0.0
            gain = rate / alone
            saved_s = max(0.0, (curve.compute_s(1) or 0.0) - 1 / rate) if rate else 0.0
            basis = f"{curve.basis}: {rate:.0f} samples/s per slot at batch {at}"
            text += f"; {basis}, {gain:.1f}x batch 1"
        elif s.fit is not None and s.fit.per_sample_s > 0:
            gain = s.fit.samples_per_s(size) / s.fit.samples_per_s(1)
            saved_s = max(0.0, 1 / s.fit.samples_per_s(1) - 1 / s.fit.samples_per_s(size))
            basis = f"the compute fit predicts {gain:.1f}x the capacity at batch {size}"
            text += f"; {basis}"
        if why:
            text += f" ({why})"
        prediction = None
        if gain is not None and gain > 1:
            expected, capped = _cap(s, peak.requests_per_s * gain, saved_s)
            prediction = _predict(s, "requests_per_s", expected, "; ".join(p for p in (basis, capped) if p))
        change = Change(
            "batching", True, False, "server", f"--max-batch-size {size} --max-queue-delay-us {delay_us}",
            {"max_batch_size": size, "max_queue_delay_us": delay_us},
        )  # fmt: skip
        return [Recommendation(text, change, prediction)]
    if full_batches(peak):
        return []  # the bigger-batch advice covers it
    busy = util.host_busy_fraction
    if busy is not None and busy < HOST_BUSY and util.server_cores is not None and util.machine_cores:
        instances = (peak.server_settings.instances or 1) + 1
        expected, capped = _cap(s, peak.requests_per_s * instances / (instances - 1))
        return [
            Recommendation(
                f"add an instance (--instances {instances}): the host CPUs were only {busy:.0%} busy "
                f"(server {util.server_cores:.2f} of {util.machine_cores} cores) while queueing took "
                f"{ms(parts.queueing_s)} of the {ms(parts.client_mean_s)} mean latency",
                Change("instances", instances, instances - 1, "server", f"--instances {instances}"),
                _predict(
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
                    "more "
                    "throughput needs more compute (instances, workers, a lighter variant)"
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
    expected, capped = _cap(s, peak.requests_per_s * (1 + gain))
    return [
        Recommendation(
            f"raise max_batch_size to {suggested} (--max-batch-size {suggested}): batches are full at "
            f"{current}; the fit ({ms(fit.fixed_s)} + {ms(fit.per_sample_s)}/sample) predicts {gain:+.0%} "
            f"throughput with a worst case near {ms(worst_s)} (window + two batches) against "
            f"{objective.label}",
            Change("max_batch_size", suggested, current, "server", f"--max-batch-size {suggested}"),
            _predict(
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
    expected, capped = _cap(s, s.peak.requests_per_s * target / workers)
    basis = f"{target} event loops instead of {workers}" + (f"; {capped}" if capped else "")
    text = (
        f"run more server workers (--workers {target}): the busiest event loop used {loop} at "
        f"{s.peak.requests_per_s:.0f} req/s; {target} workers could answer about {expected:.0f} req/s"
    )
    if capped:
        text += f" ({capped})"
    return [
        Recommendation(
            text,
            Change("workers", target, workers, "server", f"--workers {target}"),
            _predict(s, "requests_per_s", expected, basis),
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
            "inferences/s "
            f"({basis})",
            Change("client_batch_size", target, batch, "client", f"--batch-size {target}"),
            _predict(s, "inferences_per_s", expected, basis),
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
            "replica "
            f"(about {2 * rate:.0f} inferences/s for two) or a lighter variant"
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


# The transports a campaign can use: name, how to select it, and the client setting that selects it.
_TRANSPORTS = {
    "grpc": ("unary gRPC", "--protocol grpc, load.protocol: grpc", "protocol", "grpc", "--protocol grpc"),
    "grpc_stream": (
        "gRPC streaming",
        "one ModelStreamInfer stream per client: servescope load --streaming, load.streaming: true",
        "streaming",
        True,
        "--streaming",
    ),
    "http": ("REST", "--protocol http, load.protocol: http", "protocol", "http", "--protocol http"),
}


def other_transport(s: Situation) -> list[Recommendation]:
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
    used = _TRANSPORTS[probe.used][0] if probe.used in _TRANSPORTS else probe.used
    name, how, setting, value, flag = _TRANSPORTS[best]
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
                f"{peak.inferences_per_s:.0f} inferences/s at {describe_load(peak)} met {objective.label}, "
                "but "
                f"step {peak.step_index} is flagged (see Consistency): re-measure with longer steps, then "
                "test "
                "higher load to find the knee"
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
                    _predict(s, "inferences_per_s", peak.inferences_per_s * ratio, basis),
                )
            )
    return out
