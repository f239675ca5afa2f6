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
    return Gauge(
        metric.name, metric.help, metric.labels, registry=registry, multiprocess_mode=metric.multiprocess_mode
    )


class ServerMetrics:
    """Every metric of contract.SERVER_METRICS for one server, looked up by its contract entry:
    `metrics[contract.BATCHES].labels(model=...)`. A metric added to the contract exists here at once."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        process_metrics: bool = True,
        gpu: bool = True,
        worker: int = 0,
    ) -> None:
        self.registry = registry
        self.worker = str(worker)
        self._metrics = {metric.name: create(metric, registry) for metric in contract.SERVER_METRICS}
        for metric in contract.SERVER_METRICS:
            if metric.labels == (contract.WORKER_LABEL,):
                self[metric].labels(worker=self.worker)
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        if gpu:
            registry.register(GpuCollector())

    def __getitem__(self, metric: contract.Metric) -> Any:
        return self._metrics[metric.name]

    def add_model(self, model: str, version: str, precision: str, provider: str) -> None:
        """Label children for a model, so that its series exist (at zero) before the first request."""
        self[contract.MODEL_INFO].labels(
            model=model, version=version, precision=precision, provider=provider
        ).set(1)
        for metric in contract.SERVER_METRICS:
            if metric.labels == (contract.MODEL_LABEL,):
                self[metric].labels(model=model)
        for reason in contract.REJECT_REASONS:
            self[contract.REJECTED].labels(model=model, reason=reason)
