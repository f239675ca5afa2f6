"""What the server under test says about itself: its name (ServerMetadata) and the settings it runs for a
model (ModelConfig, read by servescope.settings), so step records carry the server's own account.

Servers that do not implement ModelConfig (it is an extension: Triton and servescope have it, MLServer
does not) are recorded with what is known: their name and the device their metrics report. The
questions go over the protocol of the test (gRPC, or REST's GET /v2 and GET .../config), with its TLS
settings, headers and model version.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
from google.protobuf import json_format

from loadtest import scrape
from loadtest.connection import Connection
from servescope import settings
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc
from servescope.protocol import model_config_pb2 as mc
from servescope.results import ServerSettings

TIMEOUT_S = 5.0


def device_from_metrics(snapshot: scrape.Snapshot | None, model: str) -> str | None:
    """ "cuda" or "cpu" from servescope_model_info's provider label, when the server exports it."""
    provider = scrape.model_label(snapshot, model, "provider")
    if provider is None:
        return None
    return "cuda" if ("cuda" in provider.lower() or "tensorrt" in provider.lower()) else "cpu"


def reported_settings(
    target: str,
    model: str,
    snapshot: scrape.Snapshot | None = None,
    timeout_s: float = TIMEOUT_S,
    connection: Connection | None = None,
) -> tuple[ServerSettings, str | None]:
    """The settings `target` reports for `model`, and a note when it could not say (else None)."""
    connection = connection or Connection()
    device = device_from_metrics(snapshot, model)
    if connection.protocol == "http":
        return _over_http(target, model, device, timeout_s, connection)
    metadata = connection.metadata()
    with connection.grpc_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            answer = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=timeout_s, metadata=metadata)
            name = answer.name or "unknown"
        except grpc.RpcError as exc:
            note = f"ServerMetadata failed ({exc.code().name}): server settings unknown"
            return ServerSettings(server="unknown", device=device), note
        try:
            request = pb.ModelConfigRequest(name=model, version=connection.model_version)
            response = stub.ModelConfig(request, timeout=timeout_s, metadata=metadata)
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
    return batch_stats_of(response)


def batch_stats_of(response: pb.ModelStatisticsResponse) -> dict[int, tuple[int, int]]:
    """Batch size -> (executions, compute nanoseconds) summed over the versions in a ModelStatistics
    answer."""
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


def _get_json(url: str, timeout_s: float, connection: Connection) -> object:
    request = urllib.request.Request(url, headers=dict(connection.headers))
    with urllib.request.urlopen(request, timeout=timeout_s, context=connection.ssl_context()) as response:
        return json.loads(response.read())


def _http_failure(exc: Exception) -> str:
    return f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else type(exc).__name__


def _over_http(
    target: str, model: str, device: str | None, timeout_s: float, connection: Connection
) -> tuple[ServerSettings, str | None]:
    base = connection.base_url(target)
    try:
        answer = _get_json(base + "/v2", timeout_s, connection)
        name = (answer.get("name") if isinstance(answer, dict) else None) or "unknown"
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        note = f"server metadata (GET /v2) failed ({_http_failure(exc)}): server settings unknown"
        return ServerSettings(server="unknown", device=device), note
    try:
        document = _get_json(base + connection.model_path(model) + "/config", timeout_s, connection)
        config = json_format.ParseDict(document, mc.ModelConfig(), ignore_unknown_fields=True)
    except (OSError, ValueError, json_format.ParseError) as exc:
        failure = _http_failure(exc)
        note = f"{name} did not answer the model configuration of {model!r} ({failure}): settings unknown"
        return ServerSettings(server=name, device=device), note
    return settings.settings_from_config(config, name, device), None
