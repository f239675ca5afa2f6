"""The campaign's step loop: server setting x model x client batch size x load level, one record each.

A "run" is one generator run: one level, or with `load.ramp` every level of a model and batch size,
rising within the one run (each level its own warm-up and measurement). The server a campaign starts
is started before its first run and again when it has exited; a server that will not start gives failed
records for its steps.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loadtest import scrape
from loadtest.campaign_config import CampaignConfig, LoadLevel
from loadtest.campaign_errors import CampaignError
from loadtest.engine import StepLoad, engine
from loadtest.listener import ServerProcess, locate, started
from loadtest.narration import CampaignNarration
from loadtest.payload import value_ranges
from loadtest.probes import probe
from loadtest.records import StepContext, build_record, failed_record, save_samples, target_failed
from loadtest.runner import StepFailed, StepOutcome, StepTiming, run_ramp
from loadtest.server_info import reported_settings
from loadtest.server_proc import ManagedServer, ServerStartError, start_server
from servescope import results
from servescope.repository import ModelEntry
from servescope.results import CampaignInfo, ServerSettings, StepRecord
from servescope.settings import ServeFlags


@dataclass
class StepLoop:
    """What every run of a campaign shares."""

    cfg: CampaignConfig
    output: Path
    entries: dict[str, ModelEntry]
    info: CampaignInfo
    total: int
    progress: Callable[[str], None]
    narration: CampaignNarration
    target: str | None = None  # a running server (None: the campaign starts its own)
    metrics_url: str | None = None

    def timing(self) -> StepTiming:
        cfg = self.cfg
        return StepTiming(
            warmup_s=cfg.warmup_s,
            window_s=cfg.window_s,
            max_step_s=cfg.max_duration_s,
            stability_percent=cfg.stability_percent,
            stable_windows=cfg.stable_windows,
        )

    def runs(self) -> list[list[LoadLevel]]:
        """The load levels of one model and batch size, grouped by generator run."""
        levels = self.cfg.load_levels()
        return [levels] if self.cfg.ramp else [[level] for level in levels]

    def labels(
        self, model: str, batch_size: int, levels: list[LoadLevel], setting: ServeFlags | None, first: int
    ) -> list[str]:
        """The progress label of each level of a run whose first step is number `first`."""
        ramp = self.cfg.ramp and len(levels) > 1
        return [
            self.narration.label(
                first + i, self.total, model, batch_size, level, setting, (i, len(levels)) if ramp else None
            )
            for i, level in enumerate(levels)
        ]

    def context(
        self, model: str, batch_size: int, level: LoadLevel, index: int, settings: ServerSettings,
        snapshot: scrape.Snapshot | None = None,
    ) -> StepContext:  # fmt: skip
        entry = self.entries.get(model)
        metadata = entry.metadata if entry is not None else {}
        precision = metadata.get("precision") or scrape.model_label(snapshot, model, "precision")
        cfg = self.cfg
        return StepContext(
            index, model, precision, batch_size, level, cfg.arrival, cfg.workers, settings, cfg.warmup_s
        )  # fmt: skip


def run_steps(loop: StepLoop, servers: list[ServeFlags | None]) -> int:
    """Run every step, appending each record to steps.jsonl; returns the number of steps recorded."""
    index = 0
    for server_number, setting in enumerate(servers):
        server = _Server(loop, setting, server_number)
        try:
            for model in loop.cfg.models:
                for batch_size in loop.cfg.client_batch_sizes:
                    for levels in loop.runs():
                        labels = loop.labels(model, batch_size, levels, setting, index)
                        server.ensure()
                        if server.start_error is not None:
                            unknown = ServerSettings(server="servescope")
                            records = [
                                failed_record(
                                    loop.context(model, batch_size, level, index + i, unknown),
                                    server.start_error,
                                )
                                for i, level in enumerate(levels)
                            ]
                        else:
                            records = _run(loop, server, model, batch_size, levels, labels, index)
                        for label, record in zip(labels, records, strict=True):
                            index += 1
                            if _record(loop, record, label, index):
                                return index
        finally:
            server.stop()
    return index


def _record(loop: StepLoop, record: StepRecord, label: str, done: int) -> bool:
    """Append a record and say so; True when on_error asks to stop here."""
    results.append_step(record, loop.output)
    loop.progress(loop.narration.after_step(done - 1, loop.total, label, record))
    if loop.cfg.on_error == "stop" and target_failed(record):
        loop.progress(
            f"step {done}/{loop.total} failed ({record.note or record.errors_by_code}); "
            "stopping as on_error: stop asks"
        )
        return True
    return False


class _Server:
    """The server of one setting that the campaign starts (nothing to do for a running target)."""

    def __init__(self, loop: StepLoop, setting: ServeFlags | None, number: int) -> None:
        self.loop, self.setting, self.number = loop, setting, number
        self.managed: ManagedServer | None = None
        self.start_error: str | None = None
        self.place_note: str | None = None  # a target's server as last found (loadtest/listener.py)

    def ensure(self) -> None:
        """Start the server if it is not running (first run, or it exited); a failure is kept."""
        if self.setting is None or self.start_error is not None:
            return
        if self.managed is not None and self.managed.alive():
            return
        loop = self.loop
        if self.managed is not None:
            loop.progress(f"server exited (code {self.managed.proc.returncode}); starting it again")
        repository = next(iter(loop.entries.values())).path.parent
        loop.progress(f"starting servescope serve ({self.setting.label()})")
        try:
            self.managed = start_server(repository, loop.cfg.models, self.setting, loop.output / "server",
                                        f"server-{self.number}")  # fmt: skip
            cfg, managed = loop.cfg, self.managed
            probe(loop.info, loop.output, cfg.models[0], managed.target, managed.http_target,
                  cfg.connection, cfg.probe_requests, loop.progress, cfg.models)  # fmt: skip
        except ServerStartError as exc:
            self.start_error = f"server did not start: {exc}"
            loop.progress(self.start_error)
            self.managed = None

    def target(self) -> str:
        if self.managed is None:
            return self.loop.target or ""
        try:
            return self.managed.target_for(self.loop.cfg.connection.protocol)
        except ServerStartError as exc:
            raise CampaignError(str(exc)) from exc

    def metrics_url(self) -> str | None:
        return self.managed.metrics_url if self.managed else self.loop.metrics_url

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()


def _run(
    loop: StepLoop, server: _Server, model: str, batch_size: int, levels: list[LoadLevel],
    labels: list[str], first: int,
) -> list[StepRecord]:  # fmt: skip
    """One generator run over `levels` (one, or a ramp); one record per level."""
    cfg, managed = loop.cfg, server.managed
    target, metrics_url = server.target(), server.metrics_url()
    # A server the campaign did not start is measured too when it listens here (loadtest/listener.py).
    place = started(managed.pid) if managed else locate(target)
    if managed is None and place.note != server.place_note:  # said once, and again when it changes
        server.place_note = place.note
        loop.progress(f"server at {target}: {place.where}: {place.note}")
    snapshot = scrape.try_scrape(metrics_url)
    # The server's own account of what it runs, not the campaign's request (servescope.settings).
    settings, settings_note = reported_settings(target, model, snapshot, connection=cfg.connection)
    contexts = [
        loop.context(model, batch_size, level, first + i, settings, snapshot)
        for i, level in enumerate(levels)
    ]
    line = loop.narration.before_run(labels[0], cfg, len(levels))
    if line:
        loop.progress(line)
    raw_dir = loop.output / ".raw" / f"step-{first:03d}"
    entry = loop.entries.get(model)
    load = StepLoad(
        target=target,
        model=model,
        levels=levels,
        samples_dir=raw_dir,
        reports_dir=loop.output / cfg.engine,  # Locust's reports: locust/
        report_prefix=loop.narration.report_prefix(first),
        arrival=cfg.arrival,
        batch_size=batch_size,
        connection=cfg.connection,
        input_data=cfg.input_data,
        payload=cfg.payload,
        value_ranges=value_ranges(entry.metadata if entry is not None else {}),
        seed=cfg.seed + first,
        timeout_s=cfg.timeout_s,
        max_inflight=cfg.max_inflight,
        connections=cfg.connections,
        workers=cfg.workers,
    )
    try:
        outcomes = run_ramp(engine(cfg.engine), load, loop.timing(), metrics_url=metrics_url,
                            server_pid=place.pid, progress=loop.progress,
                            labels=labels)  # fmt: skip
    except StepFailed as exc:
        return [failed_record(ctx, f"load generator failed: {exc}") for ctx in contexts]
    finally:
        shutil.rmtree(raw_dir, ignore_errors=True)
    records = []
    for ctx, outcome in zip(contexts, outcomes, strict=False):
        _note(outcome, managed, settings_note, place)
        records.append(build_record(ctx, outcome, save_samples(outcome, loop.output, ctx.index)))
    for ctx in contexts[len(outcomes) :]:
        records.append(failed_record(ctx, "the load generator exited before this level"))
    return records


def _note(
    outcome: StepOutcome, managed: ManagedServer | None, settings_note: str | None, place: ServerProcess
) -> None:
    outcome.cpu.server_process, outcome.cpu.server_process_note = place.where, place.note
    outcome.cpu.server_pids = place.pids or None
    if managed is not None and not managed.alive():
        outcome.notes.append(f"server exited during the step (code {managed.proc.returncode})")
    if settings_note:
        outcome.notes.append(settings_note)
