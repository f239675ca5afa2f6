"""Read a campaign folder for analysis, and decide which steps can be analysed and which are left out.

A step is left out (never silently dropped: the report lists it with its reason) when its line in
steps.jsonl cannot be read, when no request completed, or when it carries no latency figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analysis.steps import describe_step
from servescope.results import CampaignInfo, ResultsError, StepRecord, read_campaign, read_steps


@dataclass
class LeftOut:
    """A step the analysis could not use, and why."""

    where: str  # "step 3 (sentiment_fp32, 32 users)" or "steps.jsonl:7"
    reason: str


@dataclass
class Campaign:
    """The campaign as read from disk: its description, the usable steps, and the left-out ones."""

    folder: Path
    info: CampaignInfo
    steps: list[StepRecord]
    left_out: list[LeftOut] = field(default_factory=list)


def _reason_to_leave_out(step: StepRecord) -> str | None:
    if step.completed <= 0:
        errors = ", ".join(f"{code}={count}" for code, count in sorted(step.errors_by_code.items()))
        note = f"; note: {step.note}" if step.note else ""
        return f"no request completed (errors: {errors or 'none'}){note}"
    if step.latency_s is None:
        return "no client latency recorded"
    if step.duration_s <= 0:
        return f"measured duration is {step.duration_s} s"
    if step.load.mode == "closed" and not step.load.users:
        return f"closed-loop step without a user count (users={step.load.users!r})"
    if step.load.mode == "open" and not step.load.rate_rps:
        return f"open-loop step without a rate (rate_rps={step.load.rate_rps!r})"
    if step.load.mode not in ("closed", "open"):
        return f"unknown load mode {step.load.mode!r}"
    return None


def load_campaign(folder: Path) -> Campaign:
    """Read campaign.json and steps.jsonl; raise ResultsError when the folder is not usable at all."""
    if not folder.exists():
        raise ResultsError(f"{folder}: no such campaign folder")
    if not folder.is_dir():
        raise ResultsError(f"{folder}: not a folder")
    info = read_campaign(folder)
    records, skipped = read_steps(folder)
    left_out = []
    for message in skipped:
        where, _, why = message.partition(": ")
        left_out.append(LeftOut(where=where.replace(f"{folder}/", ""), reason=why))
    steps: list[StepRecord] = []
    for step in records:
        reason = _reason_to_leave_out(step)
        if reason is None:
            steps.append(step)
        else:
            left_out.append(LeftOut(where=describe_step(step), reason=reason))
    return Campaign(folder=folder, info=info, steps=steps, left_out=left_out)
