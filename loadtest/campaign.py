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

from loadtest.campaign_config import CampaignConfig, load_campaign_config, parse_campaign_config
from loadtest.campaign_errors import CampaignError, CampaignInterrupted
from loadtest.connection import Connection
from loadtest.input_data import read_input_data
from loadtest.machine import machine_info, peak_probe
from loadtest.narration import CampaignNarration, LoadNarration
from loadtest.payload import PayloadError
from loadtest.probes import probe
from loadtest.records import now_iso
from loadtest.steps import StepLoop, run_steps
from servescope import results
from servescope.flops import graph_figures
from servescope.repository import ModelEntry, RepositoryError, list_models
from servescope.results import CampaignInfo
from servescope.settings import ServeFlags

__all__ = ["CampaignError", "CampaignInterrupted", "run_campaign", "run_load"]


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
    narration: CampaignNarration | None = None,
) -> Path:
    """Run the campaign and write output/campaign.json and output/steps.jsonl; returns output.

    `narration` words the progress lines and names the generator reports (default: a campaign's).

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
    narration = narration or CampaignNarration()
    progress(narration.opening(cfg, total))
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
            loop = StepLoop(cfg, output, entries, info, total, progress, narration, target, metrics_url)
            done = run_steps(loop, servers)
        except KeyboardInterrupt:
            info.interrupted = True
            raise CampaignInterrupted(output, _count_steps(output), total) from None
        finally:
            info.finished_at = now_iso()
            results.write_campaign(info, output)
            shutil.rmtree(output / ".raw", ignore_errors=True)
    progress(narration.closing(cfg, done, total, output))
    return output


def run_load(
    cfg: CampaignConfig,
    output: Path,
    target: str,
    metrics_url: str | None = None,
    model_repository: Path | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """`servescope load`: a campaign of one step (or one ramp) against a running server, worded as one test.

    Raises:
        CampaignError: as run_campaign, and when no request of any step succeeded (the record is kept).
        CampaignInterrupted: as run_campaign.
    """
    if model_repository is not None:
        models_from_repository(Path(model_repository), cfg.models)  # a model it lacks is an error here
    output = Path(output)
    run_campaign(cfg, output, model_repository, target, metrics_url, progress, LoadNarration())
    records, _skipped = results.read_steps(output)
    if records and not any(r.completed for r in records):
        errors: dict[str, int] = {}
        for r in records:
            for code, count in r.errors_by_code.items():
                errors[code] = errors.get(code, 0) + count
        detail = next((r.note for r in records if r.note), None)
        raise CampaignError(
            f"no request to {cfg.models[0]!r} at {target} succeeded (errors {errors})"
            + (f": {detail}" if detail else "")
            + f"; the record is in {output}"
        )
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


def _count_steps(output: Path) -> int:
    path = output / results.STEPS_FILE
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0
