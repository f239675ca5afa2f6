"""The vocabulary of the verdict rules (rules.py): a VerdictKind, a Finding, and the tests and sentences
several rules share (headroom, saturation, how a resource tracked throughput)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from analysis.context import Situation
from analysis.fmt import ms
from analysis.recommend import Recommendation
from analysis.steps import falls_short, load_shed
from analysis.thresholds import ERROR_RATIO_MAX, HEADROOM, QUEUE_DOMINANT_SHARE

Advice = Callable[[Situation], list[Recommendation]]


@dataclass(frozen=True)
class VerdictKind:
    """One kind of verdict. css_class is one of the report's families: ok, limit, config, client, unknown.
    `advice` are the recommendation pieces (recommend.py) it gives, in order."""

    key: str
    title: str
    css_class: str
    advice: tuple[Advice, ...]

    def recommend(self, s: Situation) -> list[Recommendation]:
        """Every piece's recommendations, in order, each once."""
        seen: dict[str, Recommendation] = {}
        for piece in self.advice:
            for recommendation in piece(s):
                seen.setdefault(recommendation.text, recommendation)
        return list(seen.values())


@dataclass
class Finding:
    """What a rule found: the kind, the sentences that say why, and the figures it rests on."""

    kind: VerdictKind
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)


# ---- Helpers the rules share -----------------------------------------------------------------------


def headroom(s: Situation) -> bool:
    return s.latency_s <= HEADROOM * s.objective.latency_s and s.peak.error_ratio <= ERROR_RATIO_MAX


def saturated(s: Situation) -> bool:
    return (
        s.ctx.curve.saturated
        or s.share("queueing_s") >= QUEUE_DOMINANT_SHARE
        or load_shed(s.peak) > 0
        or falls_short(s.peak)
    )


def saturation(s: Situation) -> str:
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


def tracks(s: Situation, attribute: str, what: str) -> list[str]:
    """A sentence on how closely a resource followed throughput across the model's steps, if known."""
    correlation = s.ctx.correlation
    r = getattr(correlation, attribute, None) if correlation else None
    if r is None or correlation is None:
        return []
    model = s.ctx.curve.model
    return [f"{what} tracked throughput with r = {r:.2f} over the {correlation.points} steps of {model}"]
