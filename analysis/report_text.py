"""The verdict as a few lines of plain text, for the terminal (`servescope analyze`, the demo)."""

from __future__ import annotations

from analysis.summary import Summary


def format_verdict(summary: Summary) -> str:
    """The verdict as a few lines of plain text for the terminal."""
    lines = [f"Campaign {summary.campaign!r}: objective {summary.objective.label}"]
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
