"""The Prometheus metrics of DESIGN.md, created against a registry passed in (never the global one)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from server.gpu import GpuCollector

# Seconds: 100 us .. 10 s with a boundary on every latency objective the docs name (1, 5, 10, 25, 50,
# 100, 250 ms).
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
REJECT_REASONS = ("queue_full", "deadline", "invalid", "draining", "cancelled")


class ServerMetrics:
    """Every servescope_* metric of one server instance."""

    def __init__(
        self, registry: CollectorRegistry, *, process_metrics: bool = True, gpu: bool = True
    ) -> None:
        self.registry = registry
        self.requests = Counter(
            "servescope_requests", "Inference requests answered, by gRPC status code", ["model", "code"],
            registry=registry,
        )  # fmt: skip
        self.request_duration = Histogram(
            "servescope_request_duration_seconds", "Time from request arrival to response, in the server",
            ["model"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.queue_duration = Histogram(
            "servescope_queue_duration_seconds", "Time a request waited in the batching queue",
            ["model"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.compute_duration = Histogram(
            "servescope_compute_duration_seconds", "Time to execute one batch (one observation per batch)",
            ["model"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "servescope_batch_size", "Samples per executed batch", ["model"], buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.inferences = Counter(
            "servescope_inferences", "Samples inferred (a request of batch 8 counts 8)", ["model"],
            registry=registry,
        )  # fmt: skip
        self.batches = Counter("servescope_batches", "Executed batches", ["model"], registry=registry)
        self.queue_depth = Gauge(
            "servescope_queue_depth", "Requests waiting in the batching queue", ["model"], registry=registry
        )
        self.inflight = Gauge(
            "servescope_inflight_requests", "Requests inside the server (queued or computing)", ["model"],
            registry=registry,
        )  # fmt: skip
        self.rejected = Counter(
            "servescope_requests_rejected", "Requests refused or dropped before compute, by reason",
            ["model", "reason"], registry=registry,
        )  # fmt: skip
        self.model_info = Info(
            "servescope_model", "Loaded model: version, precision, execution provider", ["model"],
            registry=registry,
        )  # fmt: skip
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        if gpu:
            registry.register(GpuCollector())

    def add_model(self, model: str, version: str, precision: str, provider: str) -> None:
        """Label children for a model, so that its series exist (at zero) before the first request."""
        self.model_info.labels(model=model).info(
            {"version": version, "precision": precision, "provider": provider}
        )
        for metric in (self.inferences, self.batches, self.queue_depth, self.inflight):
            metric.labels(model=model)
        for metric in (self.request_duration, self.queue_duration, self.compute_duration, self.batch_size):
            metric.labels(model=model)
        for reason in REJECT_REASONS:
            self.rejected.labels(model=model, reason=reason)
