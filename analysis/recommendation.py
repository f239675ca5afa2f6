"""What a recommendation is: text for people plus, where it changes something, the exact change (a
`servescope serve` setting of servescope/settings.py by its ServeFlags name, or a client or campaign
setting) and a prediction: which figure of the step should move, from what, to what, and on what basis.
`servescope tune` applies the change and checks the prediction. The pieces that make them: recommend.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from analysis.context import Situation
from analysis.fmt import ms
from analysis.steps import describe_load
from analysis.thresholds import BATCH_GAIN_MIN
from servescope.settings import Setting, serve_flags_argv


@dataclass
class Change:
    """One setting to change. where: "server" (a setting of servescope/settings.py, by its ServeFlags
    name), "client" (the load client: client_batch_size, connections), or "campaign" (load.workers,
    model). A server change's `flag` is always the settings' own command line for it."""

    setting: str
    value: Any
    current: Any = None
    where: str = "server"
    flag: str | None = None  # the command-line form, e.g. "--max-queue-delay-us 600"
    also: dict[str, Any] = field(default_factory=dict)  # settings that go with it (batching on: its size)

    def __post_init__(self) -> None:
        if self.where == "server":
            self.flag = " ".join(serve_flags_argv(self.settings())) or None

    def settings(self) -> dict[str, Any]:
        """Every setting this change makes, by name."""
        return {self.setting: self.value, **self.also}


def server_change(setting: Setting, value: Any, current: Any, also: dict[str, Any] | None = None) -> Change:
    """A change of a `servescope serve` setting (and those that go with it); its flag comes from the
    setting's definition."""
    return Change(setting.name, value, current, "server", also=dict(also or {}))


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


def predict(s: Situation, figure: str, expected: float, basis: str, step: Any = None) -> Prediction:
    step = step or s.peak
    current = {
        "requests_per_s": step.requests_per_s,
        "inferences_per_s": step.inferences_per_s,
        "mean_latency_s": step.latency_s.mean if step.latency_s else math.nan,
        "p99_s": step.latency_s.p99 if step.latency_s else math.nan,
    }[figure]
    return Prediction(figure, float(current), float(expected), step.step_index, describe_load(step), basis)


def cap(s: Situation, rps: float, saved_s: float = 0.0) -> tuple[float, str]:
    """A predicted request rate, capped by what the available cores allow at today's CPU per request
    (less `saved_s` CPU seconds per request that the change saves)."""
    limit = s.machine_rps_saving(saved_s)
    if limit is not None and rps > limit:
        per = "today's CPU per request" + (f" less the {ms(saved_s)} of compute it saves" if saved_s else "")
        return limit, f"capped at {limit:.0f} req/s, what {s.available_cores} cores allow at {per}"
    return rps, ""


def batch_size_for(s: Situation, outstanding: int, limit: int = 64) -> tuple[int, str]:
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


def batching_gain(s: Situation, size: int, outstanding: int) -> tuple[float | None, str, float, str]:
    """What enabling batches of up to `size` samples gains with `outstanding` samples in flight: the
    capacity ratio to batch 1 (None: nothing to judge by), its basis, the CPU seconds per request saved,
    and the words that say so (the measured curve by batch size first, else the compute fit)."""
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
        return gain, basis, saved_s, f"; {basis}, {gain:.1f}x batch 1"
    if s.fit is not None and s.fit.per_sample_s > 0:
        gain = s.fit.samples_per_s(size) / s.fit.samples_per_s(1)
        saved_s = max(0.0, 1 / s.fit.samples_per_s(1) - 1 / s.fit.samples_per_s(size))
        basis = f"the compute fit predicts {gain:.1f}x the capacity at batch {size}"
        return gain, basis, saved_s, f"; {basis}"
    return None, "", 0.0, ""


# The transports a campaign can use: name, how to select it, and the client setting that selects it.
TRANSPORTS = {
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
