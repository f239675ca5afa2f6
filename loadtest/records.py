"""Step records: turning a measured step (runner.StepOutcome) into a results.StepRecord, and back out.

Written by the step loop (steps.py) that `servescope campaign` and `servescope load` share.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtest.campaign_config import LoadLevel
from loadtest.step_figures import StepOutcome
from servescope import results
from servescope.results import CpuUsage, LoadSpec, ServerSettings, StepRecord

# Error codes that are measurements of an overloaded server, not a broken target (on_error ignores them).
OVERLOAD_CODES = frozenset({"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CLIENT_DROPPED"})


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class StepContext:
    """What a step record needs besides the measurement."""

    index: int
    model: str
    precision: str | None
    batch_size: int
    level: LoadLevel
    arrival: str
    workers: int
    settings: ServerSettings
    warmup_s: float


def build_record(ctx: StepContext, outcome: StepOutcome, samples_file: str | None) -> StepRecord:
    measured = outcome.measured
    load = LoadSpec(
        mode=ctx.level.mode,
        users=ctx.level.users,
        rate_rps=ctx.level.rate_rps,
        arrival=ctx.arrival if ctx.level.mode == "open" else None,
        workers=ctx.workers,
    )
    return StepRecord(
        step_index=ctx.index,
        model=ctx.model,
        precision=ctx.precision,
        client_batch_size=ctx.batch_size,
        load=load,
        server_settings=ctx.settings,
        started_at=dt.datetime.fromtimestamp(outcome.started_at_s, dt.timezone.utc).isoformat(
            timespec="milliseconds"
        ),
        warmup_s=ctx.warmup_s,
        duration_s=measured.duration_s,
        completed=measured.completed,
        errors_by_code=dict(measured.errors_by_code),
        requests_per_s=measured.throughput_rps,
        inferences_per_s=measured.inferences / measured.duration_s if measured.duration_s > 0 else 0.0,
        latency_s=outcome.latency(),
        stable=outcome.stable,
        windows=outcome.windows,
        server=outcome.server,
        cpu=outcome.cpu,
        gpu=outcome.gpu,
        samples_file=samples_file,
        note="; ".join(outcome.notes) or None,
        client=outcome.client,
        compute_by_batch_size=outcome.compute_by_batch_size,
    )


def failed_record(ctx: StepContext, note: str) -> StepRecord:
    """A step that could not be measured at all: no requests, the reason in `note`."""
    return StepRecord(
        step_index=ctx.index,
        model=ctx.model,
        precision=ctx.precision,
        client_batch_size=ctx.batch_size,
        load=LoadSpec(ctx.level.mode, ctx.level.users, ctx.level.rate_rps, None, ctx.workers),
        server_settings=ctx.settings,
        started_at=now_iso(),
        warmup_s=ctx.warmup_s,
        duration_s=0.0,
        completed=0,
        errors_by_code={},
        requests_per_s=0.0,
        inferences_per_s=0.0,
        latency_s=None,
        stable=False,
        windows=[],
        server=None,
        cpu=CpuUsage(None, None, None, False),
        gpu=None,
        note=note,
    )


def save_samples(outcome: StepOutcome, folder: Path, index: int) -> str:
    """The measured interval's OK latencies (seconds, float64) as samples/step-NNN.npy."""
    relative = f"{results.SAMPLES_DIR}/step-{index:03d}.npy"
    (folder / results.SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    np.save(folder / relative, outcome.measured.ok_latencies_s.astype(np.float64))
    return relative


def step_summary(record: StepRecord) -> str:
    p99 = f"p99 {record.latency_s.p99 * 1e3:.1f} ms" if record.latency_s else "no answer"
    text = (
        f"{record.requests_per_s:.1f} req/s ({record.inferences_per_s:.1f} inf/s), {p99}, "
        f"{'stable' if record.stable else 'not stable'}"
    )
    if record.errors_by_code:
        text += f", errors {record.errors_by_code}"
    if record.cpu.generator_saturated:
        text += ", LOAD GENERATOR SATURATED"
    return text


def target_failed(record: StepRecord) -> bool:
    """Errors that say the target is broken or gone (not overload codes), or no measurement at all."""
    if record.duration_s == 0.0:
        return True
    return any(code not in OVERLOAD_CODES for code in record.errors_by_code)
