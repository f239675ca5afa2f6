"""The verdict kinds and the rules that find them, as data: RULES is tried in order on a series' peak
step, and the first rule that returns a Finding names the verdict.

A kind carries its title, the report's CSS class and its recommendation builder (made of the pieces in
recommend.py). A rule is a small function of the Situation that returns its reasons and evidence, or
None. Adding a verdict is one kind and one rule here (and a new piece in recommend.py if its advice is
new) and its test. Thresholds: thresholds.py; the shared vocabulary: finding.py.
"""

from __future__ import annotations

from collections.abc import Callable

from analysis import recommend as advice
from analysis.context import Situation
from analysis.finding import Finding, VerdictKind, headroom, saturated, saturation, tracks
from analysis.fmt import ms, pct
from analysis.steps import batching_enabled, full_batches, generator_busy
from analysis.thresholds import (
    BATCH_WINDOW_SHARE,
    COMPUTE_BUSY,
    CONTENDED_OTHER_CORES,
    GENERATOR_DELAY_SHARE,
    GENERATOR_STARVED_WAIT_SHARE,
    GPU_BUSY,
    GPU_IDLE,
    HEADROOM,
    HEALTHY_MAX_BUSY,
    HOST_BUSY,
    LARGE_REQUEST_BYTES,
    LONELY_BATCH_MAX,
    LOOP_BUSY_CORES,
    LOOP_LAG_SATURATED_S,
    QUEUE_DOMINANT_SHARE,
    REST_DOMINANT_SHARE,
    SERVER_STARVED_WAIT_SHARE,
)

# ---- The kinds, each with the recommendations it gives (pieces from recommend.py, in order) ---------


GENERATOR_BOUND = VerdictKind(
    "generator-bound",
    "generator-bound: the load generator was the limit",
    "client",
    (advice.more_generators, advice.shorter_window, advice.variants),
)
GENERATOR_STARVED = VerdictKind(
    "generator-starved",
    "generator-starved: the load generator could not get the CPU it needed",
    "client",
    (advice.free_the_generator,),
)
MACHINE_CONTENDED = VerdictKind(
    "machine-contended",
    "machine-contended: other processes held the CPU the server needed",
    "client",
    (advice.quiet_machine,),
)
FRONT_END = VerdictKind(
    "front-end-bound",
    "front-end-bound: the server's gRPC event loop is saturated",
    "limit",
    (
        advice.more_workers,
        advice.client_batching,
        advice.other_transport,
        advice.shorter_window,
        advice.variants,
    ),
)
QUEUEING = VerdictKind(
    "queueing",
    "queueing / under-provisioned: the server is saturated and requests wait in its queue",
    "limit",
    (advice.shorter_window, advice.queueing, advice.bigger_batches, advice.variants),
)
COMPUTE_CPU = VerdictKind(
    "compute-bound-cpu",
    "compute-bound on CPU",
    "limit",
    (advice.shorter_window, advice.queueing, advice.bigger_batches, advice.variants),
)
COMPUTE_GPU = VerdictKind(
    "compute-bound-gpu",
    "compute-bound on GPU",
    "limit",
    (advice.shorter_window, advice.bigger_batches, advice.gpu_replica, advice.variants),
)
HOST_BOUND = VerdictKind(
    "host-bound",
    "host-bound: the GPU idles while the host CPU is saturated",
    "limit",
    (advice.shorter_window, advice.bigger_batches, advice.less_host_work, advice.variants),
)
BATCHING_DELAY = VerdictKind(
    "batching-delay-bound",
    "batching-delay-bound: the batch window is longer than the load needs",
    "config",
    (advice.shorter_window_or_batching_off, advice.variants),
)
SERIALIZATION = VerdictKind(
    "serialization-bound",
    "serialization/network-bound: time goes outside queue and compute",
    "config",
    (advice.shorter_window, advice.cheaper_transport, advice.variants),
)
HEALTHY = VerdictKind(
    "healthy",
    "healthy: objective met with headroom",
    "ok",
    (advice.shorter_window, advice.variants, advice.headroom),
)
UNDETERMINED = VerdictKind(
    "undetermined",
    "undetermined: not enough measurements",
    "unknown",
    (advice.shorter_window, advice.record_metrics, advice.variants),
)
UNEXPLAINED = VerdictKind(
    "unexplained",
    "unexplained: time goes outside the server, and nothing measured explains it",
    "unknown",
    (advice.shorter_window, advice.other_transport, advice.variants),
)
_ALL_KINDS = (
    GENERATOR_BOUND,
    GENERATOR_STARVED,
    MACHINE_CONTENDED,
    FRONT_END,
    QUEUEING,
    COMPUTE_CPU,
    COMPUTE_GPU,
    HOST_BOUND,
    BATCHING_DELAY,
    SERIALIZATION,
    HEALTHY,
    UNDETERMINED,
    UNEXPLAINED,
)
KINDS: dict[str, VerdictKind] = {kind.key: kind for kind in _ALL_KINDS}


# ---- The rules, in the order they are tried ----------------------------------------------------------


def generator_bound(s: Situation) -> Finding | None:
    """Nothing measured at a saturated generator's step can be trusted to describe the server."""
    if not generator_busy(s.peak):
        return None
    busiest, cores = s.peak.cpu.generator_max_process_percent, s.peak.cpu.generator_cores
    return Finding(
        GENERATOR_BOUND,
        [
            f"at {s.at} the load generator was saturated: busiest process at "
            f"{'n/a' if busiest is None else f'{busiest:.0f}%'} of a core, "
            f"{'n/a' if cores is None else f'{cores:.2f}'} cores in all",
            f"the server answered {s.peak.requests_per_s:.1f} req/s with "
            f"queueing at {pct(s.parts.share('queueing_s'))} of the mean latency: it was not the limit",
        ],
    )


def generator_starved(s: Situation) -> Finding | None:
    """Other processes took the CPU the generator wanted, or it fell behind its own schedule, and the time
    outside the server (where its delays show) dominates the latency: its timings describe it, not the
    server. A generator that waits because the server it loads shares its cores is not starved by
    something else, and when the server's own queue or compute dominates, its waits change nothing."""
    cpu, client = s.peak.cpu, s.peak.client
    wait = cpu.generator_wait_share
    delay = client.delay_mean_s if client is not None else None
    mean = s.parts.client_mean_s
    others = cpu.other_cores is not None and cpu.other_cores >= CONTENDED_OTHER_CORES
    waited = wait is not None and wait >= GENERATOR_STARVED_WAIT_SHARE and others
    behind = delay is not None and mean > 0 and delay >= GENERATOR_DELAY_SHARE * mean
    if not (waited or behind) or s.share("rest_s") < REST_DOMINANT_SHARE:
        return None
    reasons = []
    if waited:
        reasons.append(
            f"at {s.at} the load generator's threads waited for a CPU {wait:.0%} of the CPU time they asked "
            f"for (it used {cpu.generator_cores or 0:.2f} of its {cpu.generator_available_cores or '?'} "
            f"cores; other processes used {cpu.other_cores or 0:.2f} cores)"
        )
    if behind and delay is not None:
        reasons.append(
            f"at {s.at} the generator itself took {ms(delay)} on average between an answer and the next "
            f"request ({delay / mean:.0%} of the {ms(mean)} mean latency it measured)"
        )
    reasons.append(
        f"{pct(s.share('rest_s'))} of the mean latency was outside the server's queue and compute: the "
        "generator's own delays are in it, so it says nothing about the server"
    )
    return Finding(GENERATOR_STARVED, reasons, {"generator_wait_share": wait, "generator_delay_s": delay})


def machine_contended(s: Situation) -> Finding | None:
    """Other processes held the CPU the server needed: the machine, not the server, is the limit."""
    cpu = s.peak.cpu
    other, wait = cpu.other_cores, cpu.server_loop_wait_share
    if other is None or wait is None or other < CONTENDED_OTHER_CORES or wait < SERVER_STARVED_WAIT_SHARE:
        return None
    return Finding(
        MACHINE_CONTENDED,
        [
            f"at {s.at} other processes used {other:.2f} cores while the server's event loop waited for a "
            f"CPU {wait:.0%} of the step (server {cpu.server_cores or 0:.2f}, generator "
            f"{cpu.generator_cores or 0:.2f} of {s.available_cores or '?'} cores)",
            f"{s.shares}: the waits are the machine's, not the server's",
        ],
        {"other_cores": other, "server_loop_wait_share": wait},
    )


def without_server_metrics(s: Situation) -> Finding | None:
    """No server metrics: healthy only with room to spare and no sign of saturation, else undetermined."""
    if s.parts.available:
        return None
    if headroom(s) and not s.ctx.curve.saturated:
        return Finding(
            HEALTHY,
            [
                f"at {s.at} {s.objective.percentile} {ms(s.latency_s)} <= {HEADROOM:.0%} of the objective "
                f"{ms(s.objective.latency_s)}; no server metrics, so the split of latency is unknown"
            ],
        )
    return Finding(
        UNDETERMINED,
        [f"at {s.at} the server's metrics were not recorded: latency cannot be split", saturation(s)],
    )


def batching_delay(s: Situation) -> Finding | None:
    """The window costs latency and buys no batching."""
    if s.share("batching_delay_s") < BATCH_WINDOW_SHARE or s.requests_per_batch > LONELY_BATCH_MAX:
        return None
    return Finding(
        BATCHING_DELAY,
        [
            f"at {s.at} requests waited {ms(s.parts.batching_delay_s)} in the batch window "
            f"(max_queue_delay_us {s.peak.server_settings.max_queue_delay_us}): {s.shares}",
            f"batches held {s.requests_per_batch:.2f} requests on average: the window bought no batching",
        ],
    )


def front_end(s: Situation) -> Finding | None:
    """An event loop at its limit while the compute slots have room: the front end is the bottleneck."""
    loop, demand, lag, busy = s.loop_cores, s.loop_demand, s.loop_lag_s, s.compute_busy
    saturated = (demand is not None and demand >= LOOP_BUSY_CORES) or (
        lag is not None and lag >= LOOP_LAG_SATURATED_S
    )
    if not saturated or (busy is not None and busy >= COMPUTE_BUSY):
        return None
    evidence = []
    if loop is not None:
        wait = s.peak.cpu.server_loop_wait_share or 0.0
        evidence.append(
            f"the busiest event-loop thread used {loop:.2f} cores"
            + (f" and waited for a CPU {wait:.0%} of the step" if wait >= 0.05 else "")
        )
    if lag is not None:
        evidence.append(f"its timer fired {ms(lag)} late on average")
    cores = s.available_cores
    idle = None
    if cores and s.peak.cpu.server_cores is not None:
        used = s.peak.cpu.server_cores + (s.peak.cpu.generator_cores or 0) + (s.peak.cpu.other_cores or 0)
        idle = max(0.0, cores - used)
    return Finding(
        FRONT_END,
        [
            f"at {s.at} {', and '.join(evidence)} ({s.workers} worker{'s' if s.workers != 1 else ''}), while "
            f"the compute slots were busy {pct(busy)} of the time",
            f"{s.shares}; requests wait in gRPC and the event loop before the handler, not in the batch queue"
            + (f"; {idle:.2f} of {cores} cores were idle" if idle is not None else ""),
        ],
        {
            "loop_cores": loop,
            "loop_demand": demand,
            "loop_lag_s": lag,
            "compute_busy": busy,
            "idle_cores": idle,
        },
    )


def queueing_without_batching(s: Situation) -> Finding | None:
    """Batching off and requests queue for the one slot: batching is the fix, whatever else is busy."""
    if batching_enabled(s.peak) or s.share("queueing_s") < QUEUE_DOMINANT_SHARE:
        return None
    return Finding(
        QUEUEING,
        [f"at {s.at} {s.shares}; batching is off, so every request is computed alone", saturation(s)],
        {"compute_busy": s.compute_busy},
    )


def gpu_compute(s: Situation) -> Finding | None:
    gpu = s.util.gpu_utilization
    if s.device != "cuda" or gpu is None or gpu < GPU_BUSY:
        return None
    return Finding(
        COMPUTE_GPU,
        [
            f"at {s.at} the GPU was {gpu:.0%} busy at {s.peak.inferences_per_s:.0f} inferences/s; "
            f"{saturation(s)}",
            s.shares,
            *tracks(s, "gpu_r", "GPU utilization"),
        ],
    )


def host_bound(s: Situation) -> Finding | None:
    gpu, busy = s.util.gpu_utilization, s.util.host_busy_fraction
    if s.device != "cuda" or gpu is None or gpu >= GPU_IDLE or busy is None or busy < HOST_BUSY:
        return None
    return Finding(
        HOST_BOUND,
        [
            f"at {s.at} the GPU was only {gpu:.0%} busy while the host CPUs were {busy:.0%} busy ({s.cores})",
            f"{saturation(s)}; {s.shares}",
        ],
    )


def cpu_compute(s: Situation) -> Finding | None:
    """The compute slots (instances x workers) were executing batches nearly all the step."""
    busy = s.compute_busy
    if s.device != "cpu" or busy is None or busy < COMPUTE_BUSY or s.uncontended_compute is not None:
        return None
    return Finding(
        COMPUTE_CPU,
        [
            f"at {s.at} the {s.slots} compute slot{'s' if s.slots != 1 else ''} (instances x workers) were "
            f"busy {busy:.0%} of the time with batches of {s.mean_batch:.1f} samples ({s.cores})",
            f"{s.shares}; {saturation(s)}",
            *tracks(s, "server_cpu_r", "server CPU"),
        ],
        {"compute_busy": busy},
    )


def healthy(s: Situation) -> Finding | None:
    """Only with positive evidence of headroom: the objective met with room, no sign of saturation, the
    compute slots and the event loop well below their limits."""
    if not headroom(s) or saturated(s):
        return None
    busy, loop = s.compute_busy, s.loop_cores
    busy_slots = busy is not None and busy >= HEALTHY_MAX_BUSY
    uncontended = s.uncontended_compute if busy_slots else None  # busy, but only with the users' own cycle
    if (busy_slots and uncontended is None) or (loop is not None and loop >= HEALTHY_MAX_BUSY):
        return None
    reasons = [
        f"at {s.at} {s.objective.percentile} {ms(s.latency_s)} is "
        f"{1 - s.latency_s / s.objective.latency_s:.0%} below the objective {ms(s.objective.latency_s)}, "
        f"errors {s.peak.error_ratio:.2%}; compute slots busy {pct(busy)}"
        + (f", event loop {loop:.2f} cores" if loop is not None else ""),
        f"latency never grew faster than throughput over the series; {s.shares}",
    ]
    if uncontended:
        reasons.append(uncontended)
    if len(s.ctx.steps) == 1:
        reasons.append(
            "one load step only: no knee can be seen, so how far the load can grow is not known; measure "
            "higher load"
        )
    return Finding(HEALTHY, reasons, {"compute_busy": busy})


def queueing(s: Situation) -> Finding | None:
    if s.share("queueing_s") < QUEUE_DOMINANT_SHARE:
        return None
    if full_batches(s.peak):
        limit = s.peak.server_settings.max_batch_size
        why = f"batches were full ({s.mean_batch:.1f} of max {limit} samples)"
    else:
        why = f"CPUs were not all busy ({s.cores})"
    return Finding(QUEUEING, [f"at {s.at} {s.shares}; {why}", saturation(s)])


def serialization(s: Situation) -> Finding | None:
    """Time outside queue and compute, with evidence that the transport is where it goes: a server
    across a network, or large requests. Never on loopback with small messages."""
    if s.share("rest_s") < REST_DOMINANT_SHARE:
        return None
    large = s.request_bytes is not None and s.request_bytes >= LARGE_REQUEST_BYTES
    if s.ctx.loopback and not large:
        return None
    parts = s.parts
    where = "the server is across a network" if not s.ctx.loopback else f"requests of {s.request_bytes} bytes"
    reasons = [
        f"at {s.at} {s.shares}: server overhead {ms(parts.server_overhead_s)}, outside the server "
        f"{ms(parts.outside_server_s)}; {where}",
        saturation(s),
    ]
    if parts.outside_server_s is not None:
        # Little's law on the part outside the server: how many requests were there at any time.
        outside = s.peak.requests_per_s * parts.outside_server_s
        reasons.append(
            f"on average {outside:.1f} requests were outside the server's handler (network, gRPC "
            "transport, client): a cost that grows with load is a queue there, not a fixed "
            "per-request cost"
        )
    return Finding(SERIALIZATION, reasons)


def largest_component(s: Situation) -> Finding:
    """Nothing above matched: the largest part of the latency names the limit, except time outside the
    server that no measurement explains, which is said as such."""
    shares = {
        QUEUEING: s.share("queueing_s"),
        BATCHING_DELAY: s.share("batching_delay_s"),
        COMPUTE_GPU if s.device == "cuda" else COMPUTE_CPU: s.share("compute_s"),
        UNEXPLAINED: s.share("rest_s"),
    }
    kind = max(shares, key=lambda k: shares[k])
    if kind is UNEXPLAINED:
        loop = f"{s.loop_cores:.2f} cores" if s.loop_cores is not None else "not measured"
        reasons = [
            f"at {s.at} {s.shares} ({s.cores})",
            f"on loopback with {s.request_bytes or '?'}-byte requests the transport is not the limit, and "
            f"neither the event loop ({loop}) nor the generator was saturated",
        ]
        wait = s.peak.cpu.generator_wait_share
        if wait is not None and wait >= GENERATOR_STARVED_WAIT_SHARE:
            reasons.append(
                f"the load generator shares the cores with the server and waited for {wait:.0%} of the CPU "
                "time it asked for: its own delays are likely in the time outside the server; run it on "
                "another machine to measure the server alone"
            )
        else:
            reasons.append(
                "measure more load steps, or run the server from the campaign so that its threads are "
                "measured"
            )
        return Finding(UNEXPLAINED, [*reasons, saturation(s)])
    return Finding(kind, [f"at {s.at} {s.shares} ({s.cores})", saturation(s)])


Rule = Callable[[Situation], Finding | None]
RULES: tuple[Rule, ...] = (
    generator_bound,
    generator_starved,
    machine_contended,
    without_server_metrics,
    batching_delay,
    front_end,
    queueing_without_batching,
    gpu_compute,
    host_bound,
    cpu_compute,
    healthy,
    queueing,
    serialization,
    largest_component,
)


def first_finding(s: Situation) -> Finding:
    for rule in RULES:
        finding = rule(s)
        if finding is not None:
            return finding
    raise AssertionError("largest_component always finds")  # pragma: no cover
