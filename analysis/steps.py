"""What one step record says, read the same way everywhere in the analysis: its load, its batching, its
latency at a percentile, and the simple facts the rules test (shed load, full batches, a busy generator)."""

from __future__ import annotations

from analysis.thresholds import FULL_BATCH_FRACTION, GENERATOR_BUSY_PERCENT, OPEN_LOOP_SHORTFALL
from servescope.results import StepRecord


def offered_load(step: StepRecord) -> float:
    """Users for a closed loop, requests/s for an open loop."""
    return float((step.load.users if step.load.mode == "closed" else step.load.rate_rps) or 0)


def describe_load(step: StepRecord) -> str:
    if step.load.mode == "open":
        return f"{step.load.rate_rps:g} req/s"
    return f"{step.load.users} user{'' if step.load.users == 1 else 's'}"


def describe_step(step: StepRecord) -> str:
    return (
        f"step {step.step_index} ({step.model}, {describe_load(step)}, client batch {step.client_batch_size})"
    )


def batching_enabled(step: StepRecord) -> bool:
    """False when the server ran every request alone: batching off, or a batch limit of one."""
    settings = step.server_settings
    if settings.batching is False:
        return False
    return not (settings.max_batch_size is not None and settings.max_batch_size <= 1)


def batch_size_mean(step: StepRecord) -> float | None:
    """Mean samples per executed batch, from the server's metrics."""
    return step.server.batch_size_mean if step.server is not None else None


def latency_at(step: StepRecord, percentile: str) -> float:
    assert step.latency_s is not None  # left-out steps never reach the analysis
    return float(getattr(step.latency_s, percentile))


def load_shed(step: StepRecord) -> float:
    """Requests refused because the queue was full, as the client or the server counted them."""
    shed = float(step.errors_by_code.get("RESOURCE_EXHAUSTED", 0))
    if step.server is not None:
        shed = max(shed, step.server.rejected.get("queue_full", 0.0))
    return float(shed)


def falls_short(step: StepRecord) -> bool:
    """An open-loop step whose answers fell below OPEN_LOOP_SHORTFALL of the offered rate."""
    rate = step.load.rate_rps
    return (
        step.load.mode == "open"
        and rate is not None
        and rate > 0
        and (step.requests_per_s < OPEN_LOOP_SHORTFALL * rate)
    )


def full_batches(step: StepRecord) -> bool:
    mean = batch_size_mean(step)
    limit = step.server_settings.max_batch_size
    return bool(batching_enabled(step) and mean and limit and mean >= FULL_BATCH_FRACTION * limit)


def generator_busy(step: StepRecord) -> bool:
    busiest = step.cpu.generator_max_process_percent
    return step.cpu.generator_saturated or (busiest is not None and busiest >= GENERATOR_BUSY_PERCENT)
