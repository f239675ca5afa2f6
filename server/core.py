"""The data plane: the served models, inference through their batchers, and Triton-style statistics.

The servicer hands protobuf requests in and gets protobuf responses back; this module raises the
domain errors of server.errors and never chooses a status code. Every request is counted once in
servescope_requests_total with the status code name it ends with.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from server.batcher import Batcher, BatchReport, BatchSettings
from server.codec import TensorCodec
from server.errors import ModelNotFound, Unavailable, code_for
from server.metrics import REJECT_REASONS, ServerMetrics
from server.model import ModelRunner
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import model_config_pb2 as mc

SERVER_NAME = "servescope"
EXTENSIONS = ("model_configuration", "statistics")
UNKNOWN_MODEL_LABEL = "_unknown"


@dataclass
class _Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)

    def message(self) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=self.count, ns=self.ns)


@dataclass
class ModelStats:
    """Triton's ModelStatistics: per-request durations, and per-execution ones by batch size."""

    success: _Duration = field(default_factory=_Duration)
    fail: _Duration = field(default_factory=_Duration)
    queue: _Duration = field(default_factory=_Duration)
    compute_input: _Duration = field(default_factory=_Duration)
    compute_infer: _Duration = field(default_factory=_Duration)
    compute_output: _Duration = field(default_factory=_Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batch_infer: dict[int, _Duration] = field(default_factory=lambda: collections.defaultdict(_Duration))


class ServedModel:
    """One model as served: runner, codec, batcher, statistics and its metric children."""

    def __init__(self, runner: ModelRunner, settings: BatchSettings, metrics: ServerMetrics) -> None:
        self.runner = runner
        self.name = runner.name
        self.version = str(runner.version)
        self.settings = settings
        self.codec = TensorCodec(runner.name, runner.inputs, runner.outputs, settings.max_batch_size)
        self.stats = ModelStats()
        self.inflight = 0
        self.batcher = Batcher(
            runner.name, runner.run, settings, on_batch=self._on_batch, on_drop=self._on_drop
        )
        name = runner.name
        metrics.add_model(name, self.version, runner.precision, runner.provider)
        self._requests: dict[grpc.StatusCode, Any] = {}  # status code -> counter child, filled lazily
        self._requests_metric = metrics.requests
        self._request_duration = metrics.request_duration.labels(model=name)
        self._queue_duration = metrics.queue_duration.labels(model=name)
        self._compute_duration = metrics.compute_duration.labels(model=name)
        self._batch_size = metrics.batch_size.labels(model=name)
        self._inferences = metrics.inferences.labels(model=name)
        self._batches = metrics.batches.labels(model=name)
        self._rejected = {r: metrics.rejected.labels(model=name, reason=r) for r in REJECT_REASONS}
        metrics.queue_depth.labels(model=name).set_function(lambda: self.batcher.queue_depth)
        metrics.inflight.labels(model=name).set_function(lambda: self.inflight)

    def config(self) -> mc.ModelConfig:
        """The repository's config.pbtxt with the command-line overrides applied (what really runs)."""
        config = mc.ModelConfig()
        config.CopyFrom(self.runner.entry.config)
        config.max_batch_size = self.settings.max_batch_size
        if self.settings.batching:
            batching = config.dynamic_batching
            batching.max_queue_delay_microseconds = self.settings.max_queue_delay_us
            del batching.preferred_batch_size[:]
            batching.preferred_batch_size.extend(self.settings.preferred_batch_sizes)
            batching.default_queue_policy.max_queue_size = self.settings.max_queue_size
        else:
            config.ClearField("dynamic_batching")
        del config.instance_group[:]
        kind = (
            mc.ModelInstanceGroup.KIND_GPU
            if self.runner.provider.startswith("CUDA")
            else mc.ModelInstanceGroup.KIND_CPU
        )
        config.instance_group.add(count=self.settings.max_concurrent_batches, kind=kind)
        return config

    def count(self, code: grpc.StatusCode) -> None:
        child = self._requests.get(code)
        if child is None:
            child = self._requests[code] = self._requests_metric.labels(model=self.name, code=code.name)
        child.inc()

    def reject(self, reason: str) -> None:
        self._rejected[reason].inc()

    def _on_batch(self, report: BatchReport) -> None:
        if not report.ok:
            return
        stats = self.stats
        stats.execution_count += 1
        stats.inference_count += report.batch_size
        stats.last_inference_ms = int(time.time() * 1000)
        stats.batch_infer[report.batch_size].add(report.compute_s)
        self._compute_duration.observe(report.compute_s)
        self._batch_size.observe(report.batch_size)
        self._inferences.inc(report.batch_size)
        self._batches.inc()

    def _on_drop(self, reason: str) -> None:
        self.reject(reason)

    def observe_success(
        self, total_s: float, queue_s: float, compute_s: float, input_s: float, output_s: float
    ) -> None:
        stats = self.stats
        stats.success.add(total_s)
        stats.queue.add(queue_s)
        stats.compute_input.add(input_s)
        stats.compute_infer.add(compute_s)
        stats.compute_output.add(output_s)
        self._request_duration.observe(total_s)
        self._queue_duration.observe(queue_s)
        self.count(grpc.StatusCode.OK)

    def statistics(self) -> pb.ModelStatistics:
        stats = self.stats
        message = pb.ModelStatistics(
            name=self.name,
            version=self.version,
            last_inference=stats.last_inference_ms,
            inference_count=stats.inference_count,
            execution_count=stats.execution_count,
        )
        infer = message.inference_stats
        infer.success.CopyFrom(stats.success.message())
        infer.fail.CopyFrom(stats.fail.message())
        infer.queue.CopyFrom(stats.queue.message())
        infer.compute_input.CopyFrom(stats.compute_input.message())
        infer.compute_infer.CopyFrom(stats.compute_infer.message())
        infer.compute_output.CopyFrom(stats.compute_output.message())
        for size in sorted(stats.batch_infer):
            message.batch_stats.add(batch_size=size, compute_infer=stats.batch_infer[size].message())
        return message


_REJECT_REASON = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: "queue_full",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
}


class DataPlane:
    """Every served model, and the server's readiness."""

    def __init__(self, metrics: ServerMetrics, clock: Callable[[], float] = time.perf_counter) -> None:
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self.loading: set[str] = set()  # models named for loading that are not loaded yet
        self.ready = False
        self.draining = False
        self._clock = clock
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight = 0

    def add_model(self, runner: ModelRunner, settings: BatchSettings) -> ServedModel:
        served = ServedModel(runner, settings, self.metrics)
        self.models[served.name] = served
        self.loading.discard(served.name)
        return served

    def model(self, name: str, version: str = "") -> ServedModel:
        """The served model of that name and version ("" is the served one); raises ModelNotFound."""
        served = self.models.get(name)
        if served is None:
            if name in self.loading:
                raise Unavailable(f"model {name!r} is still loading")
            raise ModelNotFound(f"model {name!r} not found (serving {sorted(self.models)})")
        if version and version != served.version:
            raise ModelNotFound(
                f"model {name!r} has no version {version!r} (serving version {served.version!r})"
            )
        return served

    async def infer(
        self, request: pb.ModelInferRequest, time_remaining_s: float | None
    ) -> pb.ModelInferResponse:
        """Check, queue, batch and answer one request."""
        start_s = self._clock()
        try:
            served = self.model(request.model_name, request.model_version)
        except ModelNotFound:
            self.metrics.requests.labels(model=UNKNOWN_MODEL_LABEL, code=grpc.StatusCode.NOT_FOUND.name).inc()
            raise
        except Unavailable:  # a model that is still loading: its name is known and bounded
            name = request.model_name
            self.metrics.requests.labels(model=name, code=grpc.StatusCode.UNAVAILABLE.name).inc()
            raise
        if self.draining or not self.ready:
            served.reject("draining")
            served.count(grpc.StatusCode.UNAVAILABLE)
            state = "draining" if self.draining else "not ready yet"
            raise Unavailable(f"model {served.name!r}: server is {state}, request refused")
        deadline_s = None if time_remaining_s is None else start_s + time_remaining_s
        served.inflight += 1
        self._inflight += 1
        self._idle.clear()
        try:
            decoded = served.codec.decode(request)
            decoded_s = self._clock()
            outcome = await served.batcher.submit(decoded.inputs, deadline_s)
            encode_start_s = self._clock()
            response = served.codec.encode(request, served.version, outcome.outputs, decoded.output_indices)
            end_s = self._clock()
        except asyncio.CancelledError:
            expired = deadline_s is not None and self._clock() >= deadline_s
            served.count(grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED)
            served.stats.fail.add(self._clock() - start_s)
            raise
        except Exception as exc:
            code = code_for(exc)
            served.count(code)
            served.stats.fail.add(self._clock() - start_s)
            reason = _REJECT_REASON.get(code)
            if reason is not None:
                served.reject(reason)
            raise
        finally:
            served.inflight -= 1
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        served.observe_success(
            end_s - start_s,
            outcome.queue_s,
            outcome.compute_s,
            decoded_s - start_s,
            end_s - encode_start_s,
        )
        return response

    async def drain(self, grace_s: float) -> bool:
        """Refuse new requests and wait up to grace_s for the accepted ones; True when all finished."""
        self.draining = True
        self.ready = False
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        for served in self.models.values():
            await served.batcher.close()
        loop = asyncio.get_running_loop()
        for served in self.models.values():
            await loop.run_in_executor(None, served.runner.close)

    # Control plane ------------------------------------------------------------------------------------

    def model_ready(self, name: str, version: str = "") -> bool:
        if name in self.loading:
            return False
        self.model(name, version)
        return self.ready

    def server_metadata(self, version: str) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=version, extensions=list(EXTENSIONS))

    def model_metadata(self, name: str, version: str = "") -> pb.ModelMetadataResponse:
        served = self.model(name, version)
        response = pb.ModelMetadataResponse(
            name=served.name, versions=[served.version], platform="onnxruntime_onnx"
        )
        for spec in served.runner.inputs:
            response.inputs.add(name=spec.name, datatype=spec.datatype, shape=[-1, *spec.dims])
        for spec in served.runner.outputs:
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=[-1, *spec.dims])
        return response

    def model_config(self, name: str, version: str = "") -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse(config=self.model(name, version).config())

    def statistics(self, name: str = "", version: str = "") -> pb.ModelStatisticsResponse:
        chosen = [self.model(name, version)] if name else [self.models[n] for n in sorted(self.models)]
        return pb.ModelStatisticsResponse(model_stats=[served.statistics() for served in chosen])

    def repository_index(self, ready_only: bool) -> pb.RepositoryIndexResponse:
        response = pb.RepositoryIndexResponse()
        state = "READY" if self.ready else "UNAVAILABLE"
        if ready_only and not self.ready:
            return response
        for name in sorted(self.models):
            reason = "" if self.ready else ("draining" if self.draining else "loading")
            response.models.add(name=name, version=self.models[name].version, state=state, reason=reason)
        for name in sorted(self.loading):
            response.models.add(name=name, state="LOADING", reason="loading")
        return response
