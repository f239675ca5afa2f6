"""Lean async KServe v2 load clients (unary gRPC, gRPC streaming, REST): closed loop, pre-built requests,
little client overhead.

Requests are built and serialized once before the run (token ids from servescope.corpus, sent as
raw_input_contents), and every call passes those bytes through an identity serializer, so the client
spends its CPU on gRPC itself. Works against any KServe v2 server (servescope, Triton, MLServer).

    result = asyncio.run(run_load("127.0.0.1:8001", "sentiment_fp32", concurrency=32, duration_s=10,
                                  warmup_s=2))
    print(result.throughput_rps, result.p50_s, result.p99_s)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from servescope.corpus import SEQUENCE_LENGTH, pad_sequences, synthetic_reviews
from servescope.protocol import grpc_service_pb2 as pb

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
DISTINCT_REQUESTS = 256


def channel_options() -> list[tuple[str, int]]:
    """gRPC channel options for a load client: no message size limit worth hitting, and a subchannel pool
    of its own, so that several channels to one target really open several connections (by default
    channels with equal arguments share one)."""
    return [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.use_local_subchannel_pool", 1),
    ]


@dataclass(frozen=True)
class LoadResult:
    """What one closed-loop run measured (only calls that started and ended inside the window)."""

    completed: int
    errors: dict[str, int]
    duration_s: float
    latencies_s: np.ndarray
    batch_size: int = 1
    concurrency: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def throughput_rps(self) -> float:
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def inferences_per_s(self) -> float:
        return self.throughput_rps * self.batch_size

    def percentile_s(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s.size else float("nan")

    @property
    def p50_s(self) -> float:
        return self.percentile_s(50)

    @property
    def p99_s(self) -> float:
        return self.percentile_s(99)

    def row(self) -> dict[str, Any]:
        """The client's figures of a results file's row: calls, errors by code, rate, p50 and p99."""
        return {
            "completed": self.completed,
            "errors": self.errors,
            "throughput_rps": self.throughput_rps,
            "p50_s": self.p50_s,
            "p99_s": self.p99_s,
        }


def build_requests(
    model: str,
    *,
    batch_size: int = 1,
    input_name: str = "tokens",
    seed: int = 0,
    count: int = DISTINCT_REQUESTS,
) -> list[bytes]:
    """Serialized ModelInferRequests with `batch_size` synthetic reviews each (INT32, raw contents)."""
    sequences, _ = synthetic_reviews(count * batch_size, seed)
    tokens = pad_sequences(sequences, maxlen=SEQUENCE_LENGTH)
    requests = []
    for index in range(count):
        rows = tokens[index * batch_size : (index + 1) * batch_size]
        request = pb.ModelInferRequest(model_name=model, id=str(index))
        request.inputs.add(name=input_name, datatype="INT32", shape=list(rows.shape))
        request.raw_input_contents.append(np.ascontiguousarray(rows, dtype="<i4").tobytes())
        requests.append(request.SerializeToString())
    return requests


async def run_load(
    target: str,
    model: str,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    batch_size: int = 1,
    input_name: str = "tokens",
    seed: int = 0,
    timeout_s: float = 30.0,
    connections: int = 1,
) -> LoadResult:
    """Keep `concurrency` calls in flight for warmup_s + duration_s; measure the last duration_s.

    The calls are spread over `connections` channels, each its own TCP connection: a server whose
    workers share a port (SO_REUSEPORT) is balanced by connection, not by call.
    """
    if connections < 1:
        raise ValueError(f"connections must be >= 1, got {connections}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    payloads = build_requests(model, batch_size=batch_size, input_name=input_name, seed=seed)
    channels = [grpc.aio.insecure_channel(target, options=channel_options()) for _ in range(connections)]
    try:
        calls = [
            channel.unary_unary(
                INFER_METHOD,
                request_serializer=lambda raw: raw,  # already serialized
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            for channel in channels
        ]
        await asyncio.gather(*(channel.channel_ready() for channel in channels))

        def caller(infer):
            async def call(payload: bytes) -> None:
                await infer(payload, timeout=timeout_s)

            return call

        # users spread evenly over the connections
        latencies, errors = await _closed_loop(
            [caller(c) for c in calls], payloads, concurrency, duration_s, warmup_s, _grpc_error
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return _result(latencies, errors, duration_s, concurrency, batch_size)


async def _closed_loop(
    calls: list, payloads: list, concurrency: int, duration_s: float, warmup_s: float, errors_of
) -> tuple[list[float], dict[str, int]]:
    """Keep `concurrency` calls in flight (worker i uses calls[i % len(calls)]); measure the last
    duration_s."""
    start_s = time.perf_counter()
    measure_from_s = start_s + warmup_s
    stop_s = measure_from_s + duration_s
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def worker(offset: int) -> None:
        call = calls[offset % len(calls)]
        index = offset
        while True:
            sent_s = time.perf_counter()
            if sent_s >= stop_s:
                return
            try:
                await call(payloads[index % len(payloads)])
                failed = None
            except Exception as exc:
                failed = errors_of(exc)
            done_s = time.perf_counter()
            index += concurrency
            if sent_s >= measure_from_s and done_s <= stop_s:
                if failed is None:
                    latencies.append(done_s - sent_s)
                else:
                    errors[failed] = errors.get(failed, 0) + 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, errors


def _result(
    latencies: list[float], errors: dict[str, int], duration_s: float, concurrency: int, batch_size: int = 1
) -> LoadResult:
    return LoadResult(
        completed=len(latencies),
        errors=errors,
        duration_s=duration_s,
        latencies_s=np.asarray(latencies, dtype=np.float64),
        batch_size=batch_size,
        concurrency=concurrency,
    )


def _grpc_error(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    return type(exc).__name__


async def run_stream_load(
    target: str, model: str, *, concurrency: int, duration_s: float, warmup_s: float, connections: int = 1
) -> LoadResult:
    """As run_load, over ModelStreamInfer: every concurrent caller keeps one stream (as perf_analyzer
    --streaming does) and sends its next request when the answer to the last one arrives."""
    payloads = build_requests(model)
    channels = [grpc.aio.insecure_channel(target, options=channel_options()) for _ in range(connections)]
    streams = []
    try:
        await asyncio.gather(*(channel.channel_ready() for channel in channels))
        for i in range(concurrency):
            method = channels[i % len(channels)].stream_stream(
                STREAM_METHOD,
                request_serializer=lambda raw: raw,
                response_deserializer=pb.ModelStreamInferResponse.FromString,
            )
            streams.append(method())

        def caller(stream):
            async def call(payload: bytes) -> None:
                await stream.write(payload)
                response = await stream.read()
                if response.error_message:
                    raise RuntimeError(response.error_message)

            return call

        latencies, errors = await _closed_loop(
            [caller(s) for s in streams], payloads, concurrency, duration_s, warmup_s, _grpc_error
        )
    finally:
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*(channel.close() for channel in channels))
    return _result(latencies, errors, duration_s, concurrency)


def rest_bodies(model: str) -> list[tuple[bytes, dict[str, str]]]:
    """The same requests as build_requests, as KServe v2 REST bodies with binary tensors."""
    import json

    bodies = []
    for raw in build_requests(model):
        request = pb.ModelInferRequest.FromString(raw)
        header = json.dumps(
            {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
                         "parameters": {"binary_data_size": len(data)}}
                        for t, data in zip(request.inputs, request.raw_input_contents, strict=True)],
             "parameters": {"binary_data_output": True}}
        ).encode()  # fmt: skip
        headers = {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        }
        bodies.append((header + b"".join(request.raw_input_contents), headers))
    return bodies


async def run_rest_load(
    target: str, model: str, *, concurrency: int, duration_s: float, warmup_s: float
) -> LoadResult:
    """As run_load, over KServe v2 REST (aiohttp client, binary tensors): HTTP/1.1 carries one request
    at a time per connection, so every concurrent caller has its own keep-alive connection."""
    import aiohttp

    payloads = rest_bodies(model)
    url = f"http://{target}/v2/models/{model}/infer"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(payload: tuple[bytes, dict[str, str]]) -> None:
            body, headers = payload
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")

        latencies, errors = await _closed_loop(
            [call], payloads, concurrency, duration_s, warmup_s, lambda exc: str(exc).split(":")[0]
        )
    return _result(latencies, errors, duration_s, concurrency)
