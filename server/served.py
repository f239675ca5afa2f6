"""One model as served: runner, codec, batcher, Triton-style statistics and its metric children."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

from server.batcher import Batcher, BatchReport, BatchSettings
from server.codec import TensorCodec
from server.messages import ModelMetadata, TensorMetadata
from server.metrics import ServerMetrics
from server.model import ModelRunner
from servescope import metrics as contract
from servescope import settings as settings_contract
from servescope.protocol import model_config_pb2 as mc
from servescope.repository import PLATFORM


@dataclass
class Duration:
    """A count and a total time, as Triton's StatisticDuration (nanoseconds)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)


@dataclass
class ModelStats:
    """Triton's ModelStatistics: per-request durations, and per-execution ones by batch size."""

    name: str
    version: str
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batch_infer: dict[int, Duration] = field(default_factory=lambda: collections.defaultdict(Duration))


class ServedModel:
    """One model as served; the data plane counts each request here once, by its status code name."""

    def __init__(
        self, runner: ModelRunner, settings: BatchSettings, metrics: ServerMetrics, workers: int = 1
    ) -> None:
        self.runner = runner
        self.workers = workers
        self.name = runner.name
        self.version = str(runner.version)
        self.settings = settings
        self.codec = TensorCodec(runner.name, runner.inputs, runner.outputs, settings.max_batch_size)
        self.stats = ModelStats(self.name, self.version)
        name = runner.name
        metrics.add_model(name, self.version, runner.precision, runner.provider)
        self._requests: dict[str, Any] = {}  # status code name -> counter child, filled lazily
        self._requests_metric = metrics[contract.REQUESTS]
        self._request_duration = metrics[contract.REQUEST_DURATION].labels(model=name)
        self._queue_duration = metrics[contract.QUEUE_DURATION].labels(model=name)
        self._compute_duration = metrics[contract.COMPUTE_DURATION].labels(model=name)
        self._batch_size = metrics[contract.BATCH_SIZE].labels(model=name)
        self._inferences = metrics[contract.INFERENCES].labels(model=name)
        self._batches = metrics[contract.BATCHES].labels(model=name)
        rejected = metrics[contract.REJECTED]
        self._rejected = {r: rejected.labels(model=name, reason=r) for r in contract.REJECT_REASONS}
        self.inflight = metrics[contract.INFLIGHT].labels(model=name)
        queue_depth = metrics[contract.QUEUE_DEPTH].labels(model=name)
        self.batcher = Batcher(
            runner.name,
            runner.run,
            settings,
            on_batch=self._on_batch,
            on_drop=self.reject,
            on_depth=queue_depth.set,
        )

    def config(self) -> mc.ModelConfig:
        """The repository's config.pbtxt with the command-line overrides applied: what really runs.

        Settings config.pbtxt has no field for are in `parameters` (servescope.settings.PARAMETERS).
        """
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
        settings_contract.write_parameters(
            config,
            adaptive_delay=self.settings.adaptive_delay,
            intra_op_threads=self.runner.intra_op_threads,
            workers=self.workers,
        )
        return config

    def metadata(self) -> ModelMetadata:
        def describe(specs: list) -> tuple[TensorMetadata, ...]:
            return tuple(TensorMetadata(s.name, s.datatype, (-1, *s.dims)) for s in specs)

        return ModelMetadata(
            self.name, (self.version,), PLATFORM, describe(self.runner.inputs), describe(self.runner.outputs)
        )

    def count(self, status: str) -> None:
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = self._requests_metric.labels(model=self.name, code=status)
        child.inc()

    def reject(self, reason: str) -> None:
        self._rejected[reason].inc()

    def _on_batch(self, report: BatchReport) -> None:
        if not report.ok:
            return
        stats = self.stats
        stats.execution_count += 1
        stats.last_inference_ms = int(time.time() * 1000)
        stats.batch_infer[report.batch_size].add(report.compute_s)
        self._compute_duration.observe(report.compute_s)
        self._batch_size.observe(report.batch_size)
        self._inferences.inc(report.batch_size)
        self._batches.inc()

    def observe_success(
        self, total_s: float, queue_s: float, compute_s: float, input_s: float, output_s: float, samples: int
    ) -> None:
        """One request answered: its samples join inference_count with its success, in one step, so a
        ModelStatistics read between a batch's end and its requests' answers never sees one without the
        other (inference_count == samples of the successes, as Triton counts it)."""
        stats = self.stats
        stats.inference_count += samples
        stats.success.add(total_s)
        stats.queue.add(queue_s)
        stats.compute_input.add(input_s)
        stats.compute_infer.add(compute_s)
        stats.compute_output.add(output_s)
        self._request_duration.observe(total_s)
        self._queue_duration.observe(queue_s)
        self.count("OK")

    def observe_failure(self, total_s: float, status: str) -> None:
        self.stats.fail.add(total_s)
        self.count(status)
