"""Run a load campaign: every server setting x model x client batch size x load level, one step each.

Python API (used by `servescope campaign` and by the demo):

    run_campaign(config, output, model_repository=None, target=None, metrics_url=None, progress=print)

`config` is a CampaignConfig, a path to a YAML file, or an already parsed dict. Without `target` the
campaign starts `servescope serve` itself (port 0, --ready-file) from `model_repository` (default
`models`) once per server setting and stops it afterwards; with `target` (and `metrics_url`) it
measures that running server, which may be any KServe v2 server, once with its own settings.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from loadtest import scrape
from loadtest.campaign_config import (
    CampaignConfig,
    LoadLevel,
    load_campaign_config,
    parse_campaign_config,
)
from loadtest.compute_probe import probe_compute
from loadtest.connection import Connection
from loadtest.input_data import read_input_data
from loadtest.locust_run import LocustSettings
from loadtest.machine import machine_info, peak_probe
from loadtest.payload import PayloadError, value_ranges
from loadtest.records import (
    StepContext,
    build_record,
    failed_record,
    now_iso,
    save_samples,
    step_summary,
    target_failed,
)
from loadtest.runner import StepFailed, StepTiming, run_step
from loadtest.server_info import reported_settings
from loadtest.server_proc import ManagedServer, ServerStartError, start_server
from loadtest.transport_probe import probe_transports
from servescope import results
from servescope.flops import graph_figures
from servescope.repository import ModelEntry, RepositoryError, list_models
from servescope.results import CampaignInfo, ServerSettings, StepRecord
from servescope.settings import ServeFlags


class CampaignError(RuntimeError):
    """The campaign cannot start or go on (bad repository, output in the way, server will not start)."""


class CampaignInterrupted(Exception):
    """Ctrl-C or SIGTERM: finished steps are on disk and campaign.json says interrupted."""

    def __init__(self, folder: Path, done: int, total: int) -> None:
        super().__init__(f"interrupted after {done} of {total} steps; finished steps are in {folder}")
        self.folder, self.done, self.total = folder, done, total


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so one cleanup path handles both."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _resolve_config(config: CampaignConfig | Path | str | dict[str, Any]) -> CampaignConfig:
    if isinstance(config, CampaignConfig):
        return config
    if isinstance(config, dict):
        return parse_campaign_config(config)
    return load_campaign_config(config)


def prepare_output(output: Path) -> None:
    if (output / results.CAMPAIGN_FILE).exists() or (output / results.STEPS_FILE).exists():
        raise CampaignError(f"--output {output}: already holds a campaign; choose a new folder or delete it")
    output.mkdir(parents=True, exist_ok=True)


def model_facts(entry: ModelEntry) -> dict[str, Any]:
    """A model's metadata.json for campaign.json; without FLOPs there (a model servescope did not export),
    FLOPs and weight bytes counted from its ONNX graph, so the analysis can draw the analytic floor."""
    facts = dict(entry.metadata)
    if not facts.get("flops_per_sample"):
        with contextlib.suppress(RepositoryError):
            counted = graph_figures(entry.model_file())
            if counted is not None:
                facts.update(counted)
    return facts


def models_from_repository(repository: Path, models: list[str]) -> dict[str, ModelEntry]:
    try:
        entries = {e.name: e for e in list_models(repository)}
    except RepositoryError as exc:
        raise CampaignError(f"--model-repository {repository}: {exc}") from exc
    missing = [m for m in models if m not in entries]
    if missing:
        raise CampaignError(
            f"models: {missing} not in --model-repository {repository} (has {sorted(entries)})"
        )
    return {m: entries[m] for m in models}


def run_campaign(
    config: CampaignConfig | Path | str | dict[str, Any],
    output: Path,
    model_repository: Path | None = None,
    target: str | None = None,
    metrics_url: str | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Run the campaign and write output/campaign.json and output/steps.jsonl; returns output.

    Raises:
        CampaignConfigError: invalid configuration (before any load is sent).
        CampaignError: the repository, output folder or server are not usable.
        CampaignInterrupted: Ctrl-C or SIGTERM; what was finished is on disk.
    """
    cfg = _resolve_config(config)
    output = Path(output)
    if metrics_url and not target:
        raise CampaignError("--metrics-url needs --target (the server whose metrics these are)")
    embedded = target is None
    entries: dict[str, ModelEntry] = {}
    if embedded:
        repository = Path(model_repository or "models")
        entries = models_from_repository(repository, cfg.models)
    elif model_repository is not None:
        with contextlib.suppress(CampaignError):
            entries = models_from_repository(Path(model_repository), cfg.models)
    if embedded and cfg.connection.tls:
        raise CampaignError(
            "load.tls_ca/tls_cert need --target: the server a campaign starts serves plain TCP"
        )
    check_input_data(cfg.input_data)
    prepare_output(output)

    servers: list[ServeFlags | None] = list(cfg.servers) if embedded else [None]
    total = cfg.step_count(len(servers))
    progress(f"campaign {cfg.name!r}: {total} steps, probing this machine first")
    info = CampaignInfo(
        name=cfg.name,
        started_at=now_iso(),
        config=cfg.raw,
        machine=machine_info(),
        objective=cfg.objective(),
        target=target_record(cfg.connection, target, metrics_url, embedded),
        models={name: model_facts(entry) for name, entry in entries.items()},
        peak=peak_probe(),
    )
    results.write_campaign(info, output)
    done = 0
    with sigterm_as_interrupt():
        try:
            if not embedded and target is not None:
                grpc_target = target if cfg.connection.protocol == "grpc" else None
                http_target = target if cfg.connection.protocol == "http" else None
                probe(info, output, cfg.models[0], grpc_target, http_target, cfg.connection,
                      cfg.probe_requests, progress, cfg.models)  # fmt: skip
            done = _run_steps(cfg, output, entries, servers, target, metrics_url, progress, total, info)
        except KeyboardInterrupt:
            info.interrupted = True
            raise CampaignInterrupted(output, _count_steps(output), total) from None
        finally:
            info.finished_at = now_iso()
            results.write_campaign(info, output)
            shutil.rmtree(output / ".raw", ignore_errors=True)
    progress(f"campaign {cfg.name!r}: {done} of {total} steps recorded in {output}")
    return output


def check_input_data(path: str | None) -> None:
    """The --input-data file's form, before any load is sent (its fit to the model is checked by the
    load generator, which asks the model's metadata)."""
    if path is None:
        return
    try:
        read_input_data(path)
    except PayloadError as exc:
        raise CampaignError(str(exc)) from exc


def target_record(
    connection: Connection, target: str | None, metrics_url: str | None, embedded: bool
) -> dict:
    """campaign.json's `target`: the protocol and the address for it."""
    return {
        "protocol": connection.protocol,
        "streaming": connection.streaming,
        "grpc": target if connection.protocol == "grpc" else None,
        "http": target if connection.protocol == "http" else None,
        "metrics_url": metrics_url,
        "embedded": embedded,
    }


def probe(
    info: CampaignInfo,
    output: Path,
    model: str,
    grpc_target: str | None,
    http_target: str | None,
    connection: Connection,
    requests: int,
    progress: Callable[[str], None],
    models: list[str] | None = None,
) -> None:
    """Measure the transports once (the first server a campaign measures), and the compute by batch size
    of each model the first time a server serves it, into campaign.json. `requests` 0: no probes."""
    if requests <= 0:
        return
    if info.transport is None:
        try:
            info.transport = probe_transports(model, grpc_target, http_target, connection, requests)
        except Exception as exc:  # the probe only informs the analysis: the campaign goes on without it
            progress(f"transport probe failed ({type(exc).__name__}: {exc}); no transport figures recorded")
        else:
            figures = ", ".join(f"{name} {p50 * 1e3:.3f} ms" for name, p50 in info.transport.p50_s.items())
            progress(f"transport probe ({model}, batch 1, concurrency 1, p50 per request): {figures}")
    for name in models or [model]:
        if name not in info.compute_probe and grpc_target is not None:
            _probe_compute(info, name, grpc_target, connection, progress)
    results.write_campaign(info, output)


def _probe_compute(
    info: CampaignInfo, model: str, grpc_target: str, connection: Connection, progress: Callable[[str], None]
) -> None:
    settings, _note = reported_settings(grpc_target, model, connection=connection)
    try:
        figures = probe_compute(model, grpc_target, connection, settings.max_batch_size)
    except Exception as exc:  # informs the analysis only, like the transport probe
        progress(f"compute probe failed ({type(exc).__name__}: {exc}); no compute by batch size recorded")
        return
    if not figures:
        return
    info.compute_probe[model] = figures
    shown = ", ".join(f"{size}: {seconds / count * 1e3:.2f} ms" for size, (count, seconds) in figures.items())
    progress(f"compute probe ({model}, server compute per batch by size, one request at a time): {shown}")


def _count_steps(output: Path) -> int:
    path = output / results.STEPS_FILE
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def _run_steps(
    cfg: CampaignConfig,
    output: Path,
    entries: dict[str, ModelEntry],
    servers: list[ServeFlags | None],
    target: str | None,
    metrics_url: str | None,
    progress: Callable[[str], None],
    total: int,
    info: CampaignInfo,
) -> int:
    timing = StepTiming(
        warmup_s=cfg.warmup_s,
        window_s=cfg.window_s,
        max_step_s=cfg.max_duration_s,
        stability_percent=cfg.stability_percent,
        stable_windows=cfg.stable_windows,
    )
    index = 0
    for server_number, setting in enumerate(servers):
        managed: ManagedServer | None = None
        start_error: str | None = None
        try:
            for model in cfg.models:
                for batch_size in cfg.client_batch_sizes:
                    for level in cfg.load_levels():
                        if (
                            setting is not None
                            and start_error is None
                            and (managed is None or not managed.alive())
                        ):
                            if managed is not None:
                                progress(f"server exited (code {managed.proc.returncode}); starting it again")
                            try:
                                managed = _start(output, entries, cfg, setting, server_number, progress)
                                probe(info, output, cfg.models[0], managed.target, managed.http_target,
                                      cfg.connection, cfg.probe_requests, progress, cfg.models)  # fmt: skip
                            except ServerStartError as exc:
                                start_error = f"server did not start: {exc}"
                                progress(start_error)
                                managed = None
                        if start_error is not None:
                            unknown = ServerSettings(server="servescope")
                            record = failed_record(
                                _context(cfg, entries, model, batch_size, level, index, unknown), start_error
                            )
                        else:
                            try:
                                step_target = (
                                    managed.target_for(cfg.connection.protocol) if managed else target
                                )
                            except ServerStartError as exc:
                                raise CampaignError(str(exc)) from exc
                            record = _one_step(
                                cfg, output, entries, setting, model, batch_size, level, index, total,
                                timing, step_target,
                                managed.metrics_url if managed else metrics_url, managed, progress,
                            )  # fmt: skip
                        results.append_step(record, output)
                        progress(f"step {index + 1}/{total} done: {step_summary(record)}")
                        index += 1
                        if cfg.on_error == "stop" and target_failed(record):
                            progress(
                                f"step {index}/{total} failed ({record.note or record.errors_by_code}); "
                                "stopping as on_error: stop asks"
                            )
                            return index
        finally:
            if managed is not None:
                managed.stop()
    return index


def _start(
    output: Path,
    entries: dict[str, ModelEntry],
    cfg: CampaignConfig,
    setting: ServeFlags,
    number: int,
    progress: Callable[[str], None],
) -> ManagedServer:
    repository = next(iter(entries.values())).path.parent
    progress(f"starting servescope serve ({setting.label()})")
    return start_server(repository, cfg.models, setting, output / "server", f"server-{number}")


def _context(
    cfg: CampaignConfig,
    entries: dict[str, ModelEntry],
    model: str,
    batch_size: int,
    level: LoadLevel,
    index: int,
    settings: ServerSettings,
    snapshot: scrape.Snapshot | None = None,
) -> StepContext:
    entry = entries.get(model)
    metadata = entry.metadata if entry is not None else {}
    precision = metadata.get("precision") or scrape.model_label(snapshot, model, "precision")
    return StepContext(
        index, model, precision, batch_size, level, cfg.arrival, cfg.workers, settings, cfg.warmup_s
    )  # fmt: skip


def _one_step(
    cfg: CampaignConfig,
    output: Path,
    entries: dict[str, ModelEntry],
    setting: ServeFlags | None,
    model: str,
    batch_size: int,
    level: LoadLevel,
    index: int,
    total: int,
    timing: StepTiming,
    target: str | None,
    metrics_url: str | None,
    managed: ManagedServer | None,
    progress: Callable[[str], None],
) -> StepRecord:
    entry = entries.get(model)
    metadata = entry.metadata if entry is not None else {}
    snapshot = scrape.try_scrape(metrics_url)
    # The server's own account of what it runs, not the campaign's request (servescope.settings).
    settings, settings_note = reported_settings(target or "", model, snapshot, connection=cfg.connection)
    ctx = _context(cfg, entries, model, batch_size, level, index, settings, snapshot)
    label = f"step {index + 1}/{total} {model} batch {batch_size} {level.label()}"
    if setting is not None:
        label += f" [{setting.label()}]"
    progress(f"{label}: warming up {cfg.warmup_s:g} s")
    raw_dir = output / ".raw" / f"step-{index:03d}"
    locust_settings = LocustSettings(
        target=target or "",
        model=model,
        samples_dir=raw_dir,
        mode=level.mode,
        users=level.users,
        rate_rps=level.rate_rps,
        arrival=cfg.arrival,
        batch_size=batch_size,
        workers=cfg.workers,
        payload=cfg.payload,
        seed=cfg.seed + index,
        timeout_s=cfg.timeout_s,
        max_inflight=cfg.max_inflight,
        connections=cfg.connections,
        value_ranges=value_ranges(metadata),
        connection=cfg.connection,
        input_data=cfg.input_data,
    )
    try:
        outcome = run_step(
            locust_settings,
            timing,
            output / "locust",
            f"step-{index:03d}",
            metrics_url=metrics_url,
            server_pid=managed.pid if managed else None,
            progress=progress,
            label=label,
        )
    except StepFailed as exc:
        return failed_record(ctx, f"load generator failed: {exc}")
    finally:
        shutil.rmtree(raw_dir, ignore_errors=True)
    if managed is not None and not managed.alive():
        outcome.notes.append(f"server exited during the step (code {managed.proc.returncode})")
    if settings_note:
        outcome.notes.append(settings_note)
    return build_record(ctx, outcome, save_samples(outcome, output, index))
