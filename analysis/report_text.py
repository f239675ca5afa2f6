"""The verdict as a few lines of plain text, for the terminal (`servescope analyze`, the demo): a compact
first screen (one entry per series), then each series' verdict with its reasons and recommendations."""

from __future__ import annotations

from analysis.overview import build_overview
from analysis.summary import Summary


def format_verdict(summary: Summary) -> str:
    """The verdict as a few lines of plain text for the terminal."""
    lines = [f"Campaign {summary.campaign!r}: objective {summary.objective.label}"]
    lines.extend(_at_a_glance(summary))
    if not summary.verdicts:
        lines.append("  no verdict: no step could be analysed")
    for verdict in summary.verdicts:
        lines.append(f"- {verdict.series}")
        lines.append(
            f"  verdict: {verdict.title} (based on step {', '.join(map(str, verdict.based_on_steps))})"
        )
        for reason in verdict.reasons:
            lines.append(f"    because {reason}")
        for recommendation in verdict.recommendations:
            lines.append(f"    -> {recommendation.text}")
        if verdict.flagged_steps:
            lines.append(f"    flagged steps: {', '.join(map(str, verdict.flagged_steps))}")
    if summary.left_out:
        lines.append(f"Left out {len(summary.left_out)} step(s):")
        lines.extend(f"  {item.where}: {item.reason}" for item in summary.left_out)
    for note in summary.notes:
        lines.append(f"Note: {note}")
    if summary.files:
        lines.append(
            f"Report: {summary.files['html']} (also {summary.files['markdown']}, {summary.files['summary']})"
        )
    return "\n".join(lines)


def _at_a_glance(summary: Summary) -> list[str]:
    """Four lines per series: its label; verdict, step, best throughput; its latency bar; the top change."""
    overview = build_overview(summary)
    if not overview:
        return []
    lines = ["At a glance:"]
    for o in overview:
        lines.append(f"  {o.series}")
        lines.append(f"    {o.verdict} at step {o.step_index} ({o.load}); best {o.best}")
        lines.append(f"    mean {o.mean_s * 1e3:.2f} ms: {o.bar_text}")
        lines.append(f"    top: {o.recommendation}")
    return lines
