"""The probes a campaign runs before its load: the transports once, the compute by batch size per model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from loadtest.compute_probe import probe_compute
from loadtest.connection import Connection
from loadtest.server_info import reported_settings
from loadtest.transport_probe import probe_transports
from servescope import results
from servescope.results import CampaignInfo


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
