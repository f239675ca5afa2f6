"""A short probe of the server's own compute time by batch size (servescope.results.CampaignInfo
.compute_probe), before a campaign's steps.

Client-batched requests of 1, 2, 4, ... samples up to the model's max_batch_size (at most MAX_SIZE), one
at a time on one gRPC connection, so no two of them can share a batch; the server's ModelStatistics
batch_stats are read before and after, so the figures are the server's compute, not the client's round
trip. A campaign whose server never forms big batches (batching off, or one user) still shows the
analysis what batching would buy (analysis/recommend.py). Runs in the driver, without gevent.
"""

from __future__ import annotations

import time

import grpc

from loadtest import server_info
from loadtest.connection import Connection
from loadtest.payload import build_requests, inputs_from_metadata
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

MAX_SIZE = 64  # the largest batch probed
REQUESTS_PER_SIZE = 24  # at least analysis.batch_curve.MIN_EXECUTIONS executions per size
BUDGET_S = 4.0  # the whole probe; sizes that do not fit are left out, largest first
TIMEOUT_S = 10.0


class ComputeProbeFailed(RuntimeError):
    """The server did not answer the probe; the message says what and why."""


def sizes_for(max_batch_size: int | None) -> list[int]:
    """1, 2, 4, ... up to max_batch_size (itself included) and MAX_SIZE; [] when the model cannot batch."""
    if not max_batch_size or max_batch_size < 2:
        return []
    limit = min(max_batch_size, MAX_SIZE)
    sizes = [1 << k for k in range(limit.bit_length()) if 1 << k <= limit]
    if sizes[-1] != limit:
        sizes.append(limit)
    return sizes


def probe_compute(
    model: str,
    target: str,
    connection: Connection,
    max_batch_size: int | None,
    budget_s: float = BUDGET_S,
    clock=time.monotonic,
) -> dict[str, list[float]] | None:
    """Batch size -> [executions, compute seconds] the server recorded for the probe's requests; None when
    the model cannot batch (max_batch_size below 2) or the server does not answer ModelStatistics."""
    sizes = sizes_for(max_batch_size)
    if not sizes:
        return None
    metadata = connection.metadata()
    with connection.grpc_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            answer = stub.ModelMetadata(
                pb.ModelMetadataRequest(name=model, version=connection.model_version),
                timeout=TIMEOUT_S, metadata=metadata,
            )  # fmt: skip
            inputs = inputs_from_metadata(answer)
            before = _statistics(stub, model, metadata)
        except grpc.RpcError as exc:
            raise ComputeProbeFailed(f"{model}: {exc.code().name}: {exc.details()}") from exc
        if before is None:
            return None
        started = clock()
        for size in sizes:
            (request,) = build_requests(model, inputs, batch_size=size, count=1, seed=size,
                                        version=connection.model_version)  # fmt: skip
            try:
                stub.ModelInfer(request, timeout=TIMEOUT_S, metadata=metadata)  # warm this shape
                size_started = clock()
                for _ in range(REQUESTS_PER_SIZE):
                    stub.ModelInfer(request, timeout=TIMEOUT_S, metadata=metadata)
            except grpc.RpcError as exc:
                raise ComputeProbeFailed(
                    f"{model} at batch {size}: {exc.code().name}: {exc.details()}"
                ) from exc
            spent = clock() - size_started
            # The next size costs about twice this one: stop before the budget runs out.
            if clock() - started + 2 * spent > budget_s:
                break
        after = _statistics(stub, model, metadata)
    delta = server_info.batch_statistics_delta(before, after)
    if not delta:
        return None
    # The warm-up request of each size is in the server's counts too; only sizes the probe sent are kept.
    return {size: figures for size, figures in delta.items() if int(size) in sizes}


def _statistics(stub, model: str, metadata) -> dict[int, tuple[int, int]] | None:
    try:
        response = stub.ModelStatistics(
            pb.ModelStatisticsRequest(name=model), timeout=TIMEOUT_S, metadata=metadata
        )
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND):
            return None
        raise
    return server_info.batch_stats_of(response)
