"""The verdict kinds and the rules that find them, as data: RULES is tried in order on a series' peak
step, and the first rule that returns a Finding names the verdict.

A kind carries its title, the report's CSS class and its recommendation builder (made of the pieces in
recommend.py). A rule is a small function of the Situation that returns its reasons and evidence, or
None. Adding a verdict is one kind and one rule here (and a new piece in recommend.py if its advice is
new) and its test. Thresholds: thresholds.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from analysis import recommend as advice
from analysis.context import Situation
from analysis.fmt import ms, pct
from analysis.steps import (
    batching_enabled,
    falls_short,
    full_batches,
    generator_busy,
    load_shed,
)
from analysis.thresholds import (
    BATCH_WINDOW_SHARE,
    ERROR_RATIO_MAX,
    GPU_BUSY,
    GPU_IDLE,
    HEADROOM,
    HOST_BUSY,
    IDLE_HOST,
    LONELY_BATCH_MAX,
    QUEUE_DOMINANT_SHARE,
    REST_DOMINANT_SHARE,
)

Advice = Callable[[Situation], list[str]]


@dataclass(frozen=True)
class VerdictKind:
    """One kind of verdict. css_class is one of the report's families: ok, limit, config, client, unknown.
    `advice` are the recommendation pieces (recommend.py) it gives, in order."""

    key: str
    title: str
    css_class: str
    advice: tuple[Advice, ...]

    def recommend(self, s: Situation) -> list[str]:
        """Every piece's sentences, in order, each once."""
        return list(dict.fromkeys(text for piece in self.advice for text in piece(s)))


@dataclass
class Finding:
    """What a rule found: the kind, the sentences that say why, and the figures it rests on."""

    kind: VerdictKind
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)


# ---- The kinds, each with the recommendations it gives (pieces from recommend.py, in order) ---------


GENERATOR_BOUND = VerdictKind(
    "generator-bound",
    "generator-bound: the load generator was the limit",
    "client",
    (advice.more_generators, advice.shorter_window, advice.variants),
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
    (advice.shorter_window, advice.bigger_batches, advice.variants),
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
_ALL_KINDS = (
    GENERATOR_BOUND,
    QUEUEING,
    COMPUTE_CPU,
    COMPUTE_GPU,
    HOST_BOUND,
    BATCHING_DELAY,
    SERIALIZATION,
    HEALTHY,
    UNDETERMINED,
)
KINDS: dict[str, VerdictKind] = {kind.key: kind for kind in _ALL_KINDS}


# ---- Helpers the rules share -----------------------------------------------------------------------


def _headroom(s: Situation) -> bool:
    return s.latency_s <= HEADROOM * s.objective.latency_s and s.peak.error_ratio <= ERROR_RATIO_MAX


def _saturated(s: Situation) -> bool:
    return (
        s.ctx.curve.saturated
        or s.share("queueing_s") >= QUEUE_DOMINANT_SHARE
        or load_shed(s.peak) > 0
        or falls_short(s.peak)
    )


def _saturation(s: Situation) -> str:
    """One sentence on the signs of saturation over the series, ending with the objective."""
    parts = []
    knee = s.knee
    if knee is not None:
        parts.append(
            f"latency outgrew throughput after step {knee.step_index} "
            f"({knee.inferences_per_s:.0f} inferences/s, {s.objective.percentile} {ms(knee.latency_s)})"
        )
    shed = load_shed(s.peak)
    if shed:
        parts.append(f"{shed:.0f} requests were shed (queue full)")
    if falls_short(s.peak):
        parts.append(
            f"only {s.peak.requests_per_s:.0f} of the {s.peak.load.rate_rps:g} req/s offered were answered"
        )
    met = "meets" if s.latency_s <= s.objective.latency_s else "misses"
    objective = ms(s.objective.latency_s)
    parts.append(f"{s.objective.percentile} {ms(s.latency_s)} {met} the objective {objective}")
    return "; ".join(parts)


def _tracks(s: Situation, attribute: str, what: str) -> list[str]:
    """A sentence on how closely a resource followed throughput across the model's steps, if known."""
    correlation = s.ctx.correlation
    r = getattr(correlation, attribute, None) if correlation else None
    if r is None or correlation is None:
        return []
    model = s.ctx.curve.model
    return [f"{what} tracked throughput with r = {r:.2f} over the {correlation.points} steps of {model}"]


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


def without_server_metrics(s: Situation) -> Finding | None:
    """No server metrics: healthy only with room to spare and no sign of saturation, else undetermined."""
    if s.parts.available:
        return None
    if _headroom(s) and not s.ctx.curve.saturated:
        return Finding(
            HEALTHY,
            [
                f"at {s.at} {s.objective.percentile} {ms(s.latency_s)} <= {HEADROOM:.0%} of the objective "
                f"{ms(s.objective.latency_s)}; no server metrics, so the split of latency is unknown"
            ],
        )
    return Finding(
        UNDETERMINED,
        [f"at {s.at} the server's metrics were not recorded: latency cannot be split", _saturation(s)],
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


def healthy(s: Situation) -> Finding | None:
    if not _headroom(s) or _saturated(s):
        return None
    return Finding(
        HEALTHY,
        [
            f"at {s.at} {s.objective.percentile} {ms(s.latency_s)} is "
            f"{1 - s.latency_s / s.objective.latency_s:.0%} below the objective {ms(s.objective.latency_s)}, "
            f"errors {s.peak.error_ratio:.2%}",
            f"latency never grew faster than throughput over the series; {s.shares}",
        ],
    )


def gpu_compute(s: Situation) -> Finding | None:
    gpu = s.util.gpu_utilization
    if s.device != "cuda" or gpu is None or gpu < GPU_BUSY:
        return None
    return Finding(
        COMPUTE_GPU,
        [
            f"at {s.at} the GPU was {gpu:.0%} busy at {s.peak.inferences_per_s:.0f} inferences/s; "
            f"{_saturation(s)}",
            s.shares,
            *_tracks(s, "gpu_r", "GPU utilization"),
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
            f"{_saturation(s)}; {s.shares}",
        ],
    )


def cpu_compute(s: Situation) -> Finding | None:
    """Every CPU busy, batching on and batches not full (the batch limit is not what holds them back)."""
    busy = s.util.host_busy_fraction
    if s.device != "cpu" or busy is None or busy < HOST_BUSY:
        return None
    if not batching_enabled(s.peak) or full_batches(s.peak) or s.share("rest_s") >= REST_DOMINANT_SHARE:
        return None
    return Finding(
        COMPUTE_CPU,
        [
            f"at {s.at} every CPU was busy ({s.cores}, {busy:.0%}) with batches of {s.mean_batch:.1f} "
            f"samples (not full, so the batch limit is not what holds them back); {s.shares}",
            _saturation(s),
            *_tracks(s, "server_cpu_r", "server CPU"),
        ],
    )


def queueing(s: Situation) -> Finding | None:
    if s.share("queueing_s") < QUEUE_DOMINANT_SHARE:
        return None
    if not batching_enabled(s.peak):
        why = "batching is off, so every request is computed alone"
    elif full_batches(s.peak):
        limit = s.peak.server_settings.max_batch_size
        why = f"batches were full ({s.mean_batch:.1f} of max {limit} samples)"
    else:
        why = f"CPUs were not all busy ({s.cores})"
    return Finding(QUEUEING, [f"at {s.at} {s.shares}; {why}", _saturation(s)])


def serialization(s: Situation) -> Finding | None:
    if s.share("rest_s") < REST_DOMINANT_SHARE:
        return None
    parts, util = s.parts, s.util
    reasons = [
        f"at {s.at} {s.shares}: server overhead {ms(parts.server_overhead_s)}, outside the server "
        f"{ms(parts.outside_server_s)}",
        _saturation(s),
    ]
    if parts.outside_server_s is not None:
        # Little's law on the part outside the server: how many requests were there at any time.
        outside = s.peak.requests_per_s * parts.outside_server_s
        reasons.append(
            f"on average {outside:.1f} requests were outside the server's handler (network, gRPC "
            "transport, client): a cost that grows with load is a queue there, not a fixed "
            "per-request cost"
        )
    busy = util.host_busy_fraction
    if busy is not None and busy < IDLE_HOST:
        reasons.append(
            f"the server and the generator used only {busy:.0%} of the {util.machine_cores} cores: on a "
            "shared machine, other processes may have held the CPU"
        )
    return Finding(SERIALIZATION, reasons)


def largest_component(s: Situation) -> Finding:
    """Nothing above matched: the largest part of the latency names the limit."""
    shares = {
        QUEUEING: s.share("queueing_s"),
        BATCHING_DELAY: s.share("batching_delay_s"),
        COMPUTE_GPU if s.device == "cuda" else COMPUTE_CPU: s.share("compute_s"),
        SERIALIZATION: s.share("rest_s"),
    }
    kind = max(shares, key=lambda k: shares[k])
    return Finding(kind, [f"at {s.at} {s.shares} ({s.cores})", _saturation(s)])


Rule = Callable[[Situation], Finding | None]
RULES: tuple[Rule, ...] = (
    generator_bound,
    without_server_metrics,
    batching_delay,
    healthy,
    gpu_compute,
    host_bound,
    cpu_compute,
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
