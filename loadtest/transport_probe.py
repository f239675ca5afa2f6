"""A short probe of what one request costs over each way to call the server (servescope.results
.TransportProbe): unary gRPC, one gRPC stream and REST, side by side, before a campaign's steps.

Sequential batch-1 requests at concurrency 1 on one connection each, the same payload for all three,
after a short warm-up: the differences are the transports' own cost per request, since the model's
compute is the same. The analysis reads the figures to say when streaming or another protocol would
save time (analysis/recommend.py). Runs in the driver, without gevent.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import numpy as np

from loadtest.connection import Connection
from loadtest.payload import build_requests, inputs_from_metadata, inputs_from_rest_metadata, rest_body
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc
from servescope.results import TransportProbe

REQUESTS = 200  # measured per transport, at most
WARMUP = 20
# Each transport's measured requests get at most this long (from the first transport's warm-up): a server
# with a long fixed batch window answers one request per window, and 200 of them would take seconds per
# transport for no better a median. Never fewer than MIN_REQUESTS.
BUDGET_PER_TRANSPORT_S = 1.0
MIN_REQUESTS = 30
TIMEOUT_S = 10.0


class ProbeFailed(RuntimeError):
    """A transport did not answer; the message says which and why."""


def probe_transports(
    model: str,
    grpc_target: str | None,
    http_target: str | None,
    connection: Connection,
    requests: int = REQUESTS,
) -> TransportProbe:
    """Measure every transport that has a target (grpc_target: unary and stream; http_target: REST), each
    with `requests` sequential calls, or as many as fit BUDGET_PER_TRANSPORT_S (requests_within_budget)."""
    if grpc_target is None and http_target is None:
        raise ValueError("probe_transports needs a gRPC or an HTTP target")
    payload = _payload(model, grpc_target, http_target, connection)
    calls: dict[str, Callable[[], Callable[[], None]]] = {}
    if grpc_target is not None:
        calls["grpc"] = lambda: _unary(grpc_target, payload, connection)
        calls["grpc_stream"] = lambda: _stream(grpc_target, payload, connection)
    if http_target is not None:
        calls["http"] = lambda: _rest(http_target, payload, connection)
    p50, mean = {}, {}
    count = 0  # set from the first transport's warm-up: the same count for every transport
    for transport, opener in calls.items():
        call = None
        try:
            call = opener()
            warm_started = time.perf_counter()
            for _ in range(WARMUP):
                call()
            if not count:
                count = requests_within_budget(requests, (time.perf_counter() - warm_started) / WARMUP)
            latencies = []
            for _ in range(count):
                started = time.perf_counter()
                call()
                latencies.append(time.perf_counter() - started)
        except Exception as exc:
            raise ProbeFailed(f"{transport}: {type(exc).__name__}: {exc}") from exc
        finally:
            close = getattr(call, "close", None)
            if close is not None:
                close()
        p50[transport] = float(np.median(latencies))
        mean[transport] = float(np.mean(latencies))
    return TransportProbe(model=model, requests=count, p50_s=p50, mean_s=mean, used=connection.transport)


def requests_within_budget(requests: int, per_request_s: float) -> int:
    """How many requests to measure per transport: `requests`, fewer where they would not fit in
    BUDGET_PER_TRANSPORT_S at per_request_s each, never fewer than MIN_REQUESTS (nor than asked)."""
    fit = int(BUDGET_PER_TRANSPORT_S / per_request_s) if per_request_s > 0 else requests
    return max(min(requests, MIN_REQUESTS), min(requests, fit))


def _payload(
    model: str, grpc_target: str | None, http_target: str | None, connection: Connection
) -> pb.ModelInferRequest:
    """One batch-1 request built from the model's metadata (asked over gRPC where there is a target)."""
    if grpc_target is not None:
        with connection.grpc_channel(grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelMetadataRequest(name=model, version=connection.model_version)
            inputs = inputs_from_metadata(
                stub.ModelMetadata(request, timeout=TIMEOUT_S, metadata=connection.metadata())
            )
    else:
        assert http_target is not None
        url = connection.base_url(http_target) + connection.model_path(model)
        get = urllib.request.Request(url, headers=dict(connection.headers))
        with urllib.request.urlopen(get, timeout=TIMEOUT_S, context=connection.ssl_context()) as answer:
            inputs = inputs_from_rest_metadata(json.loads(answer.read()))
    (request,) = build_requests(
        model, inputs, batch_size=1, count=1, seed=0, version=connection.model_version
    )
    return request


def _unary(target: str, request: pb.ModelInferRequest, connection: Connection) -> Callable[[], None]:
    channel = connection.grpc_channel(target)
    infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
    metadata = connection.metadata()

    def call() -> None:
        infer(request, timeout=TIMEOUT_S, metadata=metadata)

    call.close = channel.close  # type: ignore[attr-defined]
    return call


def _stream(target: str, request: pb.ModelInferRequest, connection: Connection) -> Callable[[], None]:
    channel = connection.grpc_channel(target)
    outbox: queue.Queue[pb.ModelInferRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.ModelInferRequest]:
        while (item := outbox.get()) is not None:
            yield item

    responses = pb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
        requests(), metadata=connection.metadata()
    )
    lock = threading.Lock()

    def call() -> None:
        with lock:
            outbox.put(request)
            answer = next(responses)
            if answer.error_message:
                raise ProbeFailed(f"grpc_stream: {answer.error_message}")

    def close() -> None:
        outbox.put(None)
        responses.cancel()
        channel.close()

    call.close = close  # type: ignore[attr-defined]
    return call


def _rest(target: str, request: pb.ModelInferRequest, connection: Connection) -> Callable[[], None]:
    host, _, port = target.rpartition(":")
    context = connection.ssl_context()
    if context is not None:
        client: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, int(port), timeout=TIMEOUT_S, context=context
        )
    else:
        client = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    body, header_length = rest_body(request)
    headers = {
        **connection.headers,
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(header_length),
    }
    path = connection.model_path(request.model_name) + "/infer"

    def call() -> None:
        client.request("POST", path, body, headers)
        answer = client.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise ProbeFailed(f"http: {answer.status}: {data[:200]!r}")

    call.close = client.close  # type: ignore[attr-defined]
    return call
