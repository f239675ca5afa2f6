"""The server's Prometheus metrics, created from the contract (servescope.metrics) against a registry passed
in, never the global one."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from server.gpu import GpuCollector
from servescope import metrics as contract


def create(metric: contract.Metric, registry: CollectorRegistry) -> Any:
    """The prometheus_client object of one contract metric, registered in `registry`."""
    if metric.kind == "counter":
        return Counter(metric.name, metric.help, metric.labels, registry=registry)
    if metric.kind == "histogram":
        return Histogram(metric.name, metric.help, metric.labels, buckets=metric.buckets, registry=registry)
    return Gauge(metric.name, metric.help, metric.labels, registry=registry)


class ServerMetrics:
    """Every servescope_* metric of one server instance."""

    def __init__(
        self, registry: CollectorRegistry, *, process_metrics: bool = True, gpu: bool = True
    ) -> None:
        self.registry = registry
        self.requests = create(contract.REQUESTS, registry)
        self.request_duration = create(contract.REQUEST_DURATION, registry)
        self.queue_duration = create(contract.QUEUE_DURATION, registry)
        self.compute_duration = create(contract.COMPUTE_DURATION, registry)
        self.batch_size = create(contract.BATCH_SIZE, registry)
        self.inferences = create(contract.INFERENCES, registry)
        self.batches = create(contract.BATCHES, registry)
        self.queue_depth = create(contract.QUEUE_DEPTH, registry)
        self.inflight = create(contract.INFLIGHT, registry)
        self.rejected = create(contract.REJECTED, registry)
        self.model_info = create(contract.MODEL_INFO, registry)
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        if gpu:
            registry.register(GpuCollector())

    def add_model(self, model: str, version: str, precision: str, provider: str) -> None:
        """Label children for a model, so that its series exist (at zero) before the first request."""
        self.model_info.labels(model=model, version=version, precision=precision, provider=provider).set(1)
        for metric in (self.inferences, self.batches, self.queue_depth, self.inflight):
            metric.labels(model=model)
        for metric in (self.request_duration, self.queue_duration, self.compute_duration, self.batch_size):
            metric.labels(model=model)
        for reason in contract.REJECT_REASONS:
            self.rejected.labels(model=model, reason=reason)
