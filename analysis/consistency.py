"""Checks that flag steps whose numbers should not be trusted at face value.

Flagged steps stay in the tables and charts (marked), but the highest throughput that meets the latency
objective is taken only from unflagged steps.

Thresholds, and why:
- Little's law, closed loop: N users that each send the next request as soon as the answer arrives keep
  exactly N requests outstanding, so N = throughput x mean latency. The product can fall a little short
  (the generator spends some time between an answer and the next request), but a product below
  LITTLE_MIN_RATIO x N means a quarter of the users' time was not spent waiting on the server: the latency
  figures then miss something (think time, a saturated generator, lost requests). A product above
  LITTLE_MAX_RATIO x N is impossible for a closed loop: throughput or latency is wrong.
- Error ratio above ERROR_RATIO_MAX: latency percentiles describe only the requests that succeeded.
- Unstable: the load tester's last windows disagreed (throughput or p99 still moving).
- Generator saturated: the load tester's own CPU was the limit, so its timings include its own delays.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.thresholds import ERROR_RATIO_MAX, LITTLE_MAX_RATIO, LITTLE_MIN_RATIO
from servescope.results import StepRecord


@dataclass
class Flag:
    """One reason to distrust one step."""

    step_index: int
    check: str  # "littles_law", "errors", "unstable", "generator_saturated", "note"
    message: str


def littles_law_ratio(step: StepRecord) -> float | None:
    """throughput x mean latency / users for a closed-loop step; None when it does not apply."""
    if step.load.mode != "closed" or not step.load.users or step.latency_s is None:
        return None
    return step.requests_per_s * step.latency_s.mean / step.load.users


def check_step(step: StepRecord) -> list[Flag]:
    flags: list[Flag] = []
    ratio = littles_law_ratio(step)
    if ratio is not None and not LITTLE_MIN_RATIO <= ratio <= LITTLE_MAX_RATIO:
        assert step.latency_s is not None and step.load.users  # littles_law_ratio checked both
        flags.append(
            Flag(
                step.step_index,
                "littles_law",
                f"Little's law does not hold: {step.requests_per_s:.1f} req/s x "
                f"{step.latency_s.mean * 1e3:.2f} ms mean latency = {ratio * step.load.users:.2f} requests "
                f"in flight, but {step.load.users} users were running (ratio {ratio:.2f}, "
                f"expected {LITTLE_MIN_RATIO}..{LITTLE_MAX_RATIO})",
            )
        )
    if step.error_ratio > ERROR_RATIO_MAX:
        errors = ", ".join(f"{code}={count}" for code, count in sorted(step.errors_by_code.items()))
        flags.append(
            Flag(
                step.step_index,
                "errors",
                f"{step.error_ratio:.1%} of requests failed ({errors}); latency covers only the successes",
            )
        )
    if not step.stable:
        flags.append(
            Flag(step.step_index, "unstable", "throughput or p99 had not settled over the last windows")
        )
    if step.cpu.generator_saturated:
        busiest = step.cpu.generator_max_process_percent
        detail = f" (busiest process at {busiest:.0f}% of a core)" if busiest is not None else ""
        flags.append(
            Flag(
                step.step_index,
                "generator_saturated",
                f"the load generator was saturated{detail}; its timings include its own delays",
            )
        )
    if step.note:
        flags.append(Flag(step.step_index, "note", f"load tester note: {step.note}"))
    return flags
