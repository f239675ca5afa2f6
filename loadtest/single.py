"""One load test (`servescope load`) written in the campaign format, so `servescope analyze` reads it too."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import scrape
from loadtest.campaign import (
    CampaignError,
    CampaignInterrupted,
    check_input_data,
    models_from_repository,
    prepare_output,
    probe,
    sigterm_as_interrupt,
    target_record,
)
from loadtest.campaign_config import REDACTED, LoadLevel
from loadtest.connection import Connection, ConnectionSettingsError
from loadtest.locust_run import LocustSettings
from loadtest.machine import machine_info, peak_probe
from loadtest.payload import value_ranges
from loadtest.records import (
    StepContext,
    build_record,
    now_iso,
    save_samples,
    step_summary,
)
from loadtest.runner import StepFailed, StepTiming, run_ramp, run_step
from loadtest.server_info import reported_settings
from servescope import results
from servescope.results import CampaignInfo, StepRecord

WINDOWS = 3


@dataclass
class LoadRequest:
    target: str
    model: str
    users: int | None
    rate_rps: float | None
    duration_s: float
    warmup_s: float = 2.0
    batch_size: int = 1
    workers: int = 0
    arrival: str = "poisson"
    max_inflight: int = 1000
    connections: int = 8
    payload: str = "auto"
    timeout_s: float = 30.0
    seed: int = 0
    metrics_url: str | None = None
    model_repository: Path | None = None
    stability_percent: float = 10.0
    ramp_steps: int = 1  # >1: the load rises in this many equal steps up to users / rate_rps
    connection: Connection = field(default_factory=Connection)  # protocol, streaming, TLS, version, headers
    input_data: str | None = None  # perf_analyzer JSON input file: the payloads
    probe_requests: int = 200  # transport probe before the load, requests per transport (0: none)


def run_load(request: LoadRequest, output: Path, progress: Callable[[str], None] = print) -> Path:
    """Run one fixed-length test (three windows of duration_s / 3) and write output/ as a campaign.

    With ramp_steps > 1 one Locust run steps its load up (users or rate), and each level becomes a
    step record of its own (warm-up, then duration_s measured, per level).
    """
    if (request.users is None) == (request.rate_rps is None):
        raise CampaignError("give exactly one of users (closed loop) or rate_rps (open loop)")
    if request.ramp_steps < 1:
        raise CampaignError(f"ramp_steps {request.ramp_steps}: must be at least 1")
    try:
        request.connection.check()
    except ConnectionSettingsError as exc:
        raise CampaignError(str(exc)) from exc
    check_input_data(request.input_data)
    output = Path(output)
    metadata: dict[str, Any] = {}
    if request.model_repository is not None:
        entries = models_from_repository(request.model_repository, [request.model])
        metadata = dict(entries[request.model].metadata)
    prepare_output(output)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(request).items()}
    # Header values may be credentials: campaign.json records their names only.
    config["connection"]["headers"] = {name: REDACTED for name in request.connection.headers}
    info = CampaignInfo(
        name="load",
        started_at=now_iso(),
        config=config,
        machine=machine_info(),
        objective={"percentile": "p99", "latency_s": 0.05},
        target=target_record(request.connection, request.target, request.metrics_url, False),
        models={request.model: metadata} if metadata else {},
        peak=peak_probe(),
    )
    results.write_campaign(info, output)
    levels = ramp_levels(request)
    final = levels[-1]
    snapshot = scrape.try_scrape(request.metrics_url)
    settings, settings_note = reported_settings(
        request.target, request.model, snapshot, connection=request.connection
    )
    precision = metadata.get("precision") or scrape.model_label(snapshot, request.model, "precision")
    contexts = [
        StepContext(
            i,
            request.model,
            precision,
            request.batch_size,
            level,
            request.arrival,
            request.workers,
            settings,
            request.warmup_s,
        )
        for i, level in enumerate(levels)
    ]
    raw_dir = output / ".raw"
    locust_settings = LocustSettings(
        target=request.target,
        model=request.model,
        samples_dir=raw_dir,
        mode=final.mode,
        users=final.users,
        rate_rps=final.rate_rps,
        arrival=request.arrival,
        batch_size=request.batch_size,
        workers=request.workers,
        payload=request.payload,
        seed=request.seed,
        timeout_s=request.timeout_s,
        max_inflight=request.max_inflight,
        connections=request.connections,
        value_ranges=value_ranges(metadata),
        connection=request.connection,
        input_data=request.input_data,
    )
    timing = StepTiming(
        warmup_s=request.warmup_s,
        window_s=request.duration_s / WINDOWS,
        max_step_s=request.duration_s,
        stability_percent=request.stability_percent,
        stable_windows=WINDOWS,
        fixed=True,
    )
    labels = [f"{request.model} batch {request.batch_size} {level.label()}" for level in levels]
    if len(levels) > 1:
        labels = [f"ramp {i + 1}/{len(levels)}: {label}" for i, label in enumerate(labels)]
    progress(
        f"{labels[0]}: warming up {request.warmup_s:g} s, then measuring {request.duration_s:g} s"
        + (f" per level, {len(levels)} levels" if len(levels) > 1 else "")
    )
    recorded = 0
    records: list[StepRecord] = []
    with sigterm_as_interrupt():
        try:
            grpc_target = request.target if request.connection.protocol == "grpc" else None
            http_target = request.target if request.connection.protocol == "http" else None
            probe(info, output, request.model, grpc_target, http_target, request.connection,
                  request.probe_requests, progress)  # fmt: skip
            if len(levels) == 1:
                outcomes = [
                    run_step(
                        locust_settings,
                        timing,
                        output / "locust",
                        "locust",
                        metrics_url=request.metrics_url,
                        progress=progress,
                        label=labels[0],
                    )
                ]
            else:
                outcomes = run_ramp(
                    locust_settings,
                    [(level.users, level.rate_rps) for level in levels],
                    timing,
                    output / "locust",
                    "locust",
                    metrics_url=request.metrics_url,
                    progress=progress,
                    labels=labels,
                )
            for ctx, label, outcome in zip(contexts, labels, outcomes, strict=False):
                if settings_note:
                    outcome.notes.append(settings_note)
                record = build_record(ctx, outcome, save_samples(outcome, output, ctx.index))
                results.append_step(record, output)
                records.append(record)
                recorded += 1
                progress(f"{label}: {step_summary(record)}")
        except StepFailed as exc:
            raise CampaignError(f"load test of {request.model!r} at {request.target} failed: {exc}") from exc
        except KeyboardInterrupt:
            info.interrupted = True
            raise CampaignInterrupted(output, recorded, len(levels)) from None
        finally:
            info.finished_at = now_iso()
            results.write_campaign(info, output)
            with contextlib.suppress(OSError):
                shutil.rmtree(raw_dir)
    progress(f"results in {output}")
    if records and not any(r.completed for r in records):
        errors: dict[str, int] = {}
        for r in records:
            for code, count in r.errors_by_code.items():
                errors[code] = errors.get(code, 0) + count
        detail = next((r.note for r in records if r.note), None)
        raise CampaignError(
            f"no request to {request.model!r} at {request.target} succeeded (errors {errors})"
            + (f": {detail}" if detail else "")
            + f"; the record is in {output}"
        )
    return output


def ramp_levels(request: LoadRequest) -> list[LoadLevel]:
    """The load levels: one, or ramp_steps levels rising evenly to the requested users or rate."""
    steps = request.ramp_steps
    if request.users is not None:
        users = sorted({max(1, round(request.users * (i + 1) / steps)) for i in range(steps)})
        return [LoadLevel("closed", users=u) for u in users]
    assert request.rate_rps is not None
    return [LoadLevel("open", rate_rps=request.rate_rps * (i + 1) / steps) for i in range(steps)]
