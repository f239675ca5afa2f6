"""The server-metrics contract: every metric name, its labels and buckets, and where each figure of a step
record (results.ServerDeltas) comes from, for servescope's own metrics and for Triton's nv_* metrics.

The server creates its metrics from `SERVER_METRICS`; the load tester (scraping /metrics twice) and the
analysis (PromQL increase() over a step's window) both evaluate `DELTA_SOURCES`, so a field added to
ServerDeltas is mapped here once and read the same way on both paths. The Grafana dashboard, the
Prometheus rules and the benchmarks take their names from here too (tests/foundation/test_metrics_contract.py
checks that they name no metric this module does not define).

Names are the exposed sample-family names: counters end in `_total`, histograms expose `_bucket`,
`_sum` and `_count` samples under their base name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

MODEL_LABEL = "model"

# Seconds: 100 us .. 10 s with a boundary on every latency objective the docs name (1, 5, 10, 25, 50,
# 100, 250 ms).
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# Why a request was refused or dropped before compute (servescope_requests_rejected_total{reason}).
REJECT_REASONS = ("queue_full", "deadline", "invalid", "draining", "cancelled")

Kind = Literal["counter", "gauge", "histogram"]
# How a gauge is combined over the worker processes of one server (prometheus_client's multiprocess
# mode): "livesum" adds the live workers' values, "max" takes the largest.
GaugeMode = Literal["livesum", "max", "mostrecent"]
WORKER_LABEL = "worker"


@dataclass(frozen=True)
class Metric:
    """One metric family as the server exposes it."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    multiprocess_mode: GaugeMode = "livesum"  # gauges only

    @property
    def count(self) -> str:
        return self._histogram_sample("count")

    @property
    def sum(self) -> str:
        return self._histogram_sample("sum")

    @property
    def bucket(self) -> str:
        return self._histogram_sample("bucket")

    def _histogram_sample(self, suffix: str) -> str:
        if self.kind != "histogram":
            raise TypeError(f"{self.name} is a {self.kind}, it has no _{suffix} sample")
        return f"{self.name}_{suffix}"


REQUESTS = Metric(
    "servescope_requests_total", "counter", "Inference requests answered, by gRPC status code",
    (MODEL_LABEL, "code"),
)  # fmt: skip
REQUEST_DURATION = Metric(
    "servescope_request_duration_seconds", "histogram",
    "Time from request arrival to response, in the server", (MODEL_LABEL,), LATENCY_BUCKETS_S,
)  # fmt: skip
QUEUE_DURATION = Metric(
    "servescope_queue_duration_seconds", "histogram", "Time a request waited in the batching queue",
    (MODEL_LABEL,), LATENCY_BUCKETS_S,
)  # fmt: skip
COMPUTE_DURATION = Metric(
    "servescope_compute_duration_seconds", "histogram",
    "Time to execute one batch (one observation per batch)", (MODEL_LABEL,), LATENCY_BUCKETS_S,
)  # fmt: skip
BATCH_SIZE = Metric(
    "servescope_batch_size", "histogram", "Samples per executed batch", (MODEL_LABEL,),
    tuple(float(b) for b in BATCH_SIZE_BUCKETS),
)  # fmt: skip
INFERENCES = Metric(
    "servescope_inferences_total", "counter", "Samples inferred (a request of batch 8 counts 8)",
    (MODEL_LABEL,),
)  # fmt: skip
BATCHES = Metric("servescope_batches_total", "counter", "Executed batches", (MODEL_LABEL,))
QUEUE_DEPTH = Metric(
    "servescope_queue_depth", "gauge", "Requests waiting in the batching queue", (MODEL_LABEL,)
)  # summed over live workers
INFLIGHT = Metric(
    "servescope_inflight_requests", "gauge", "Requests inside the server (queued or computing)",
    (MODEL_LABEL,),
)  # fmt: skip
REJECTED = Metric(
    "servescope_requests_rejected_total", "counter",
    "Requests refused or dropped before compute, by reason", (MODEL_LABEL, "reason"),
)  # fmt: skip
# A labelled gauge at 1 rather than an Info metric: Info cannot be aggregated across processes.
MODEL_INFO = Metric(
    "servescope_model_info", "gauge", "Loaded model: version, precision, execution provider (value 1)",
    (MODEL_LABEL, "version", "precision", "provider"), multiprocess_mode="max",
)  # fmt: skip
# Per worker process (label `worker`: 0..workers-1, so bounded): how late the event loop runs a timer
# that should fire every LOOP_TICK_S (a saturated front end runs it late), and the worker's CPU time.
LOOP_TICK_S = 0.05
EVENT_LOOP_LAG = Metric(
    "servescope_event_loop_lag_seconds", "histogram",
    f"How late a timer due every {LOOP_TICK_S * 1000:g} ms fired on the worker's event loop",
    (WORKER_LABEL,), LATENCY_BUCKETS_S,
)  # fmt: skip
WORKER_CPU = Metric(
    "servescope_worker_cpu_seconds_total", "counter", "CPU time of the worker process, all its threads",
    (WORKER_LABEL,),
)  # fmt: skip

# Inference calls a worker shed at its front door (--max-inflight reached), before reading them: no
# model is known yet, so they are counted per worker, not in servescope_requests_total.
CALLS_SHED = Metric(
    "servescope_calls_shed_total", "counter",
    "Inference calls (unary, or requests of a stream) refused with RESOURCE_EXHAUSTED before they were "
    "read, because the worker had --max-inflight calls in flight", (WORKER_LABEL,),
)  # fmt: skip

SERVER_METRICS = (
    REQUESTS, REQUEST_DURATION, QUEUE_DURATION, COMPUTE_DURATION, BATCH_SIZE, INFERENCES, BATCHES,
    QUEUE_DEPTH, INFLIGHT, REJECTED, MODEL_INFO, EVENT_LOOP_LAG, WORKER_CPU, CALLS_SHED,
)  # fmt: skip

# Exported by the supervising process of a multi-worker server (server/supervisor.py).
WORKER_RESTARTS = Metric(
    "servescope_worker_restarts_total", "counter", "Worker processes restarted after they died"
)
WORKERS_LIVE = Metric(
    "servescope_workers", "gauge", "Worker processes running and ready", multiprocess_mode="max"
)
SUPERVISOR_METRICS = (WORKER_RESTARTS, WORKERS_LIVE)

# Read from NVML at scrape time (server/gpu.py); present only where NVML finds a GPU.
GPU_UTILIZATION = Metric(
    "servescope_gpu_utilization_ratio", "gauge", "GPU busy fraction over the last sample period", ("gpu",)
)
GPU_MEMORY_USED = Metric("servescope_gpu_memory_used_bytes", "gauge", "GPU memory in use", ("gpu",))
GPU_MEMORY_TOTAL = Metric("servescope_gpu_memory_total_bytes", "gauge", "GPU memory in total", ("gpu",))
GPU_POWER = Metric("servescope_gpu_power_watts", "gauge", "GPU power draw", ("gpu",))
GPU_METRICS = (GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_POWER)

# prometheus_client's process collector: the server's CPU seconds.
PROCESS_CPU = Metric("process_cpu_seconds_total", "counter", "Total user and system CPU time in seconds")
PROCESS_MEMORY = Metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes")

ALL_METRICS = (*SERVER_METRICS, *SUPERVISOR_METRICS, *GPU_METRICS, PROCESS_CPU, PROCESS_MEMORY)


def metric_names() -> set[str]:
    """Every sample name the server can expose (histograms with their _bucket, _sum and _count)."""
    names = set()
    for metric in ALL_METRICS:
        names.add(metric.name)
        if metric.kind == "histogram":
            names.update((metric.bucket, metric.sum, metric.count))
    return names


def bound_key(le: str | float) -> str:
    """A histogram bound as step records write it: "1", "0.005", "+Inf" (Prometheus writes "1.0")."""
    try:
        value = float(str(le).replace("+Inf", "inf"))
    except ValueError:
        return str(le)
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if value.is_integer() else f"{value:g}"


# ---- The step record's server figures, and where each comes from -----------------------------------


@dataclass
class ServerDeltas:
    """What the server counted during a step (a step record's `server`): increases of its metrics between
    the start and the end of the measured interval. Each field is read as DELTA_SOURCES says."""

    requests: float
    request_s_sum: float
    inferences: float
    batches: float
    queue_count: float
    queue_s_sum: float
    compute_count: float  # one per executed batch
    compute_s_sum: float
    batch_size_sum: float
    batch_size_buckets: dict[str, float]  # cumulative count per upper bound ("1", "2", ..., "+Inf")
    rejected: dict[str, float]  # by reason: queue_full, deadline, invalid, draining
    requests_by_code: dict[str, float]  # by gRPC code name
    # Per worker process (servescope only; empty for other servers and for records before they existed):
    loop_lag_s_sum: dict[str, float] = field(default_factory=dict)  # event-loop timer lateness, seconds
    loop_lag_count: dict[str, float] = field(default_factory=dict)  # timer ticks observed
    worker_cpu_s: dict[str, float] = field(default_factory=dict)  # worker CPU seconds
    source: str = "servescope"  # "servescope", "triton" (nv_* metrics) or "prometheus"

    @property
    def batch_size_mean(self) -> float | None:
        return self.batch_size_sum / self.batches if self.batches else None

    @property
    def queue_mean_s(self) -> float | None:
        return self.queue_s_sum / self.queue_count if self.queue_count else None

    @property
    def compute_mean_s(self) -> float | None:
        """Mean compute time of one executed batch."""
        return self.compute_s_sum / self.compute_count if self.compute_count else None

    @property
    def request_mean_s(self) -> float | None:
        return self.request_s_sum / self.requests if self.requests else None


@dataclass(frozen=True)
class Term:
    """One sample's increase over the step, restricted to some label values, times a scale."""

    sample: str
    labels: tuple[tuple[str, str], ...] = ()
    scale: float = 1.0


@dataclass(frozen=True)
class Total:
    """A number: the sum of its terms' increases."""

    terms: tuple[Term, ...]


@dataclass(frozen=True)
class ByLabel:
    """A mapping from one label's values to their increases.

    `rename`, when given, keeps only those label values and renames them (Triton's reason="REJECTED"
    is servescope's "queue_full"); `buckets` formats histogram bounds with bound_key.
    """

    sample: str
    label: str
    rename: tuple[tuple[str, str], ...] = ()
    buckets: bool = False
    per_model: bool = True  # False: the metric has no model label (a per-worker one): the whole server


@dataclass(frozen=True)
class Keyed:
    """A mapping with fixed keys, each a Total; keys whose increase is 0 are left out."""

    entries: tuple[tuple[str, Total], ...]


@dataclass(frozen=True)
class Absent:
    """The source does not export this figure (an empty mapping in the record)."""


Source = Total | ByLabel | Keyed | Absent


def _total(sample: str, scale: float = 1.0) -> Total:
    return Total((Term(sample, scale=scale),))


_SERVESCOPE: dict[str, Source] = {
    "requests": _total(REQUEST_DURATION.count),
    "request_s_sum": _total(REQUEST_DURATION.sum),
    "inferences": _total(INFERENCES.name),
    "batches": _total(BATCHES.name),
    "queue_count": _total(QUEUE_DURATION.count),
    "queue_s_sum": _total(QUEUE_DURATION.sum),
    "compute_count": _total(COMPUTE_DURATION.count),
    "compute_s_sum": _total(COMPUTE_DURATION.sum),
    "batch_size_sum": _total(BATCH_SIZE.sum),
    "batch_size_buckets": ByLabel(BATCH_SIZE.bucket, "le", buckets=True),
    "rejected": ByLabel(REJECTED.name, "reason"),
    "requests_by_code": ByLabel(REQUESTS.name, "code"),
    "loop_lag_s_sum": ByLabel(EVENT_LOOP_LAG.sum, WORKER_LABEL, per_model=False),
    "loop_lag_count": ByLabel(EVENT_LOOP_LAG.count, WORKER_LABEL, per_model=False),
    "worker_cpu_s": ByLabel(WORKER_CPU.name, WORKER_LABEL, per_model=False),
}

# Triton's counters are cumulative per request, durations in microseconds. Queue and compute are summed
# once per successful request; Triton adds a batch's compute time once per request in it, so the mean
# is the compute time of the batch a request rode in, like servescope's per-batch mean. batch_size_sum
# is the sample count, so the mean batch size is inferences / executions. Triton exports no gRPC codes
# (failures are "FAILURE") and no batch-size histogram.
_TRITON_SUCCESS = "nv_inference_request_success"
_TRITON_FAILURE = "nv_inference_request_failure"
_TRITON: dict[str, Source] = {
    "requests": Total((Term(_TRITON_SUCCESS), Term(_TRITON_FAILURE))),
    "request_s_sum": _total("nv_inference_request_duration_us", 1e-6),
    "inferences": _total("nv_inference_count"),
    "batches": _total("nv_inference_exec_count"),
    "queue_count": _total(_TRITON_SUCCESS),
    "queue_s_sum": _total("nv_inference_queue_duration_us", 1e-6),
    "compute_count": _total(_TRITON_SUCCESS),
    "compute_s_sum": _total("nv_inference_compute_infer_duration_us", 1e-6),
    "batch_size_sum": _total("nv_inference_count"),
    "batch_size_buckets": Absent(),
    "rejected": ByLabel(_TRITON_FAILURE, "reason", rename=(("REJECTED", "queue_full"),)),
    "requests_by_code": Keyed((("OK", _total(_TRITON_SUCCESS)), ("FAILURE", _total(_TRITON_FAILURE)))),
    "loop_lag_s_sum": Absent(),
    "loop_lag_count": Absent(),
    "worker_cpu_s": Absent(),
}

DELTA_SOURCES: dict[str, dict[str, Source]] = {"servescope": _SERVESCOPE, "triton": _TRITON}
# A scrape is read as a source's when it holds a sample whose name starts with its marker.
SOURCE_MARKERS = {"servescope": "servescope_", "triton": "nv_inference_"}


def delta_fields() -> list[str]:
    """The ServerDeltas fields every source must map (all but `source`)."""
    return [f.name for f in fields(ServerDeltas) if f.name != "source"]


@dataclass(frozen=True)
class GpuNames:
    """The GPU gauges of one source and the label that tells GPUs apart."""

    utilization: str
    memory_used: str
    memory_total: str
    power: str
    label: str
    utilization_scale: float = 1.0  # to a 0..1 ratio


GPU_SOURCES = {
    "servescope": GpuNames(
        GPU_UTILIZATION.name, GPU_MEMORY_USED.name, GPU_MEMORY_TOTAL.name, GPU_POWER.name, "gpu"
    ),
    "triton": GpuNames(
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_power_usage",
        "gpu_uuid",
    ),
}
