"""What the server under test says about itself: its name (ServerMetadata) and the settings it runs for a
model (ModelConfig, read by servescope.settings), so step records carry the server's own account.

Servers that do not implement ModelConfig (it is an extension: Triton and servescope have it, MLServer
does not) are recorded with what is known: their name and the device their metrics report.
"""

from __future__ import annotations

import grpc

from loadtest import scrape
from servescope import settings
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc
from servescope.results import ServerSettings

TIMEOUT_S = 5.0


def device_from_metrics(snapshot: scrape.Snapshot | None, model: str) -> str | None:
    """ "cuda" or "cpu" from servescope_model_info's provider label, when the server exports it."""
    provider = scrape.model_label(snapshot, model, "provider")
    if provider is None:
        return None
    return "cuda" if ("cuda" in provider.lower() or "tensorrt" in provider.lower()) else "cpu"


def reported_settings(
    target: str, model: str, snapshot: scrape.Snapshot | None = None, timeout_s: float = TIMEOUT_S
) -> tuple[ServerSettings, str | None]:
    """The settings `target` reports for `model`, and a note when it could not say (else None)."""
    device = device_from_metrics(snapshot, model)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            name = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=timeout_s).name or "unknown"
        except grpc.RpcError as exc:
            note = f"ServerMetadata failed ({exc.code().name}): server settings unknown"
            return ServerSettings(server="unknown", device=device), note
        try:
            response = stub.ModelConfig(pb.ModelConfigRequest(name=model), timeout=timeout_s)
        except grpc.RpcError as exc:
            note = f"{name} did not answer ModelConfig for {model!r} ({exc.code().name}): settings unknown"
            return ServerSettings(server=name, device=device), note
    return settings.settings_from_config(response.config, name, device), None


def batch_statistics(
    target: str, model: str, timeout_s: float = TIMEOUT_S
) -> dict[int, tuple[int, int]] | None:
    """ModelStatistics' batch_stats for `model`: batch size -> (executions, compute nanoseconds) so far;
    None when the server does not answer ModelStatistics."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            response = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=timeout_s)
        except grpc.RpcError:
            return None
    out: dict[int, tuple[int, int]] = {}
    for stats in response.model_stats:
        for batch in stats.batch_stats:
            count, ns = out.get(batch.batch_size, (0, 0))
            out[batch.batch_size] = (count + batch.compute_infer.count, ns + batch.compute_infer.ns)
    return out


def batch_statistics_delta(
    before: dict[int, tuple[int, int]] | None, after: dict[int, tuple[int, int]] | None
) -> dict[str, list[float]] | None:
    """What the server executed between two readings: batch size -> [executions, compute seconds]."""
    if before is None or after is None:
        return None
    out = {}
    for size in sorted(after):
        count = after[size][0] - before.get(size, (0, 0))[0]
        ns = after[size][1] - before.get(size, (0, 0))[1]
        if count > 0:
            out[str(size)] = [float(count), ns / 1e9]
    return out
