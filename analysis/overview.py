"""The report's first screen, as data: one row per series (its verdict, the step it rests on, the best
throughput within the objective, the top recommendation with its predicted figure) and one stacked bar of
where the mean latency goes at that step. The HTML, Markdown and terminal reports render these rows.

The bar's parts are data (LATENCY_PARTS): each names a Decomposition field in seconds, and the parts must
not overlap. Whatever the named parts leave of the client mean is one more segment, the rest, so a part
that is not measured (None) widens the rest instead of vanishing; a new measured part (the request
timeline's client send delay, request path, response path, client wake-up) is one entry here, taken out
of the part it splits. Shares are never negative and sum to 1; when the server's own figures add up to
more than the client mean (its means cover requests the client did not time) the parts are scaled down
to the mean and the row says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.curves import Curve
from analysis.decompose import Decomposition
from analysis.recommend import Change, Prediction, Recommendation
from analysis.summary import StepRow, Summary
from analysis.verdict import Verdict


@dataclass(frozen=True)
class Part:
    """One part of the mean latency: the Decomposition field holding it, and how the bars show it."""

    field: str  # a Decomposition attribute in seconds ("" for the rest)
    label: str  # legend and HTML label
    short: str  # text bars (Markdown, terminal)
    colour: str


# In the order a request meets them; the colours are those of the report's decomposition chart.
LATENCY_PARTS = (
    Part("queueing_s", "queueing", "queue", "#d62728"),
    Part("batching_delay_s", "batch window", "window", "#ff7f0e"),
    Part("compute_s", "compute", "compute", "#1f77b4"),
    Part("server_overhead_s", "in-server overhead", "server", "#8c564b"),
    Part("outside_server_s", "outside the server", "outside", "#7f7f7f"),
)
REST = Part("", "rest (not split)", "rest", "#c7c7c7")


@dataclass
class Segment:
    part: Part
    seconds: float  # never negative; the segments of a bar sum to the client mean
    share: float  # of the client mean, 0..1
    percent: int  # share as a whole percent; a bar's percents sum to exactly 100

    @property
    def percent_text(self) -> str:
        return "<1%" if self.percent == 0 else f"{self.percent}%"


@dataclass
class SeriesOverview:
    """One row of the first screen."""

    series: str
    kind: str  # the verdict kind's key
    verdict: str  # the verdict's title up to its first colon
    css_class: str
    step_index: int  # the step the verdict is based on
    load: str  # its offered load, e.g. "32 users"
    mean_s: float  # its client mean latency
    best: str  # best throughput within the objective, or why there is none
    recommendation: str  # the top recommendation: its change and predicted figure, or its text
    segments: list[Segment]
    note: str | None = None  # why the bar is not fully split, or was scaled

    @property
    def bar_text(self) -> str:
        """The bar in words, e.g. "queue 12% | window 30% | compute 40% | outside 18%"."""
        return " | ".join(f"{s.part.short} {s.percent_text}" for s in self.segments)

    @property
    def bar_text_ms(self) -> str:
        return " | ".join(f"{s.part.short} {s.seconds * 1e3:.2f} ms {s.percent_text}" for s in self.segments)


def build_overview(summary: Summary) -> list[SeriesOverview]:
    """One row per verdict (series), in the order of the detailed verdicts below it."""
    rows = {row.step_index: row for row in summary.steps}
    curves = {curve.series: curve for curve in summary.curves}
    return [_series_row(v, rows, curves.get(v.series)) for v in summary.verdicts if v.based_on_steps]


def _series_row(verdict: Verdict, rows: dict[int, StepRow], curve: Curve | None) -> SeriesOverview:
    step = rows[verdict.based_on_steps[0]]
    segments, note = latency_segments(step.decomposition)
    top = verdict.recommendations[0] if verdict.recommendations else None
    return SeriesOverview(
        series=verdict.series,
        kind=verdict.kind,
        verdict=verdict.title.split(":", 1)[0],
        css_class=verdict.css_class,
        step_index=step.step_index,
        load=step.load,
        mean_s=step.mean_s,
        best=best_text(curve, rows),
        recommendation="none" if top is None else recommendation_text(top),
        segments=segments,
        note=note,
    )


def latency_segments(parts: Decomposition) -> tuple[list[Segment], str | None]:
    """The bar of one step: its measured parts and the rest, each with seconds, share and percent."""
    mean_s = parts.client_mean_s
    if not math.isfinite(mean_s) or mean_s <= 0:
        return [], f"no latency to split (client mean {mean_s!r} s)"
    if not parts.available:
        return _with_percents([(REST, mean_s)], mean_s), parts.note or "server metrics not recorded"
    values = {p: getattr(parts, p.field) for p in LATENCY_PARTS}
    broken = [p.label for p, value in values.items() if value is not None and not math.isfinite(value)]
    measured = [
        (p, max(value, 0.0)) for p, value in values.items() if value is not None and p.label not in broken
    ]
    total_s = sum(seconds for _, seconds in measured)
    note = f"{', '.join(broken)} not a finite number: left in the rest" if broken else None
    if total_s > mean_s:
        note = f"the server's figures add up to {total_s * 1e3:.2f} ms, above the client mean; scaled to it"
        measured = [(p, seconds * mean_s / total_s) for p, seconds in measured]
    else:
        measured.append((REST, mean_s - total_s))
    return _with_percents([(p, s) for p, s in measured if s > 0], mean_s), note


def _with_percents(parts: list[tuple[Part, float]], mean_s: float) -> list[Segment]:
    """Whole percents by the largest remainder, so that a bar's percents always sum to 100."""
    shares = [seconds / mean_s for _, seconds in parts]
    percents = [int(share * 100) for share in shares]
    by_remainder = sorted(range(len(parts)), key=lambda i: shares[i] * 100 - percents[i], reverse=True)
    for i in by_remainder[: 100 - sum(percents)]:
        percents[i] += 1
    return [Segment(p, s, share, pc) for (p, s), share, pc in zip(parts, shares, percents, strict=True)]


def best_text(curve: Curve | None, rows: dict[int, StepRow]) -> str:
    if curve is None or curve.best_step_index is None:
        if curve is not None and any(p.meets_objective for p in curve.points):
            return "none trusted: only flagged steps met the objective"
        return "none met the objective"
    load = rows[curve.best_step_index].load
    return (
        f"{curve.best_inferences_per_s:.0f} inf/s, {curve.best_requests_per_s:.0f} req/s "
        f"(step {curve.best_step_index}, {load})"
    )


FIGURES = {
    "requests_per_s": (1.0, ".0f", "req/s"),
    "inferences_per_s": (1.0, ".0f", "inf/s"),
    "mean_latency_s": (1e3, ".2f", "ms mean latency"),
    "p99_s": (1e3, ".2f", "ms p99"),
}
TEXT_LIMIT_CHARS = 110  # a recommendation without a change is cut to this on the first screen


def recommendation_text(rec: Recommendation) -> str:
    """The change and "predicted X -> Y figure"; the recommendation's own words where it changes nothing."""
    if rec.change is None:
        text = rec.text.split(": ", 1)[0] if len(rec.text) > TEXT_LIMIT_CHARS else rec.text
        return text if len(text) <= TEXT_LIMIT_CHARS else text[: TEXT_LIMIT_CHARS - 1].rstrip() + "…"
    parts = [change_text(rec.change)]
    if rec.prediction is not None:
        parts.append(prediction_text(rec.prediction))
    return "; ".join(parts)


def change_text(change: Change) -> str:
    text = f"{change.setting}: {_value(change.current)} -> {_value(change.value)}"
    return f"{text} ({change.flag})" if change.flag else text


def prediction_text(prediction: Prediction) -> str:
    scale, fmt, unit = FIGURES.get(prediction.figure, (1.0, ".3g", prediction.figure))
    current = format(prediction.current * scale, fmt)
    expected = format(prediction.expected * scale, fmt)
    return f"predicted {current} -> {expected} {unit} at {prediction.load}"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "unknown" if value is None else str(value)
