"""Scrape a server's Prometheus /metrics and turn two scrapes into ServerDeltas, CPU and GPU figures.

Understands servescope's own metrics (DESIGN.md table) and Triton's nv_* metrics, so a campaign can
measure Triton too. Triton mapping (its counters are cumulative per request, durations in microseconds):

    requests        nv_inference_request_success + nv_inference_request_failure
    request_s_sum   nv_inference_request_duration_us / 1e6
    inferences      nv_inference_count            batches        nv_inference_exec_count
    queue_*         nv_inference_queue_duration_us / 1e6 over successful requests
    compute_*       nv_inference_compute_infer_duration_us / 1e6 over successful requests: Triton adds
                    a batch's compute time once per request in it, so the mean is the compute time of
                    the batch a request rode in, like servescope's per-batch mean
    batch_size_sum  nv_inference_count (samples), so batch_size_mean = inferences / executions
    rejected        nv_inference_request_failure{reason="REJECTED"} as queue_full (when labelled)
    GPU             nv_gpu_utilization, nv_gpu_memory_used_bytes, nv_gpu_memory_total_bytes,
                    nv_gpu_power_usage
Triton has no batch size histogram, so batch_size_buckets stays empty for it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from servescope.results import GpuUsage, ServerDeltas

Labels = dict[str, str]


class ScrapeError(RuntimeError):
    """/metrics could not be fetched or parsed; the message names the URL."""


@dataclass
class Snapshot:
    """One scrape: every sample as (name, labels, value), and when it was taken."""

    taken_s: float
    samples: list[tuple[str, Labels, float]]

    def total(self, name: str, **labels: str) -> float:
        names = _names(name)
        return sum(v for n, ls, v in self.samples if n in names and _match(ls, labels))

    def has(self, prefix: str) -> bool:
        return any(n.startswith(prefix) for n, _ls, _v in self.samples)

    def by_label(self, name: str, label: str, **labels: str) -> dict[str, float]:
        out: dict[str, float] = {}
        names = _names(name)
        for n, ls, v in self.samples:
            if n in names and _match(ls, labels) and label in ls:
                out[ls[label]] = out.get(ls[label], 0.0) + v
        return out


def _names(name: str) -> tuple[str, str]:
    """prometheus_client's parser names counter samples `<family>_total` even where the server wrote
    `<family>` (Triton does), so a counter is looked up under both names."""
    return (name, name + "_total")


def _match(sample_labels: Labels, wanted: dict[str, str]) -> bool:
    return all(sample_labels.get(k) == v for k, v in wanted.items())


def parse_metrics(text: str, taken_s: float | None = None) -> Snapshot:
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[tuple[str, Labels, float]] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.append((sample.name, dict(sample.labels), float(sample.value)))
    except ValueError as exc:
        raise ScrapeError(f"metrics text does not parse: {exc}") from exc
    return Snapshot(time.time() if taken_s is None else taken_s, samples)


def scrape(url: str, timeout_s: float = 5.0) -> Snapshot:
    """Fetch and parse `url` (the full /metrics URL)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ScrapeError(f"cannot scrape {url}: {exc}") from exc
    return parse_metrics(text)


def try_scrape(url: str | None) -> Snapshot | None:
    if not url:
        return None
    try:
        return scrape(url)
    except ScrapeError:
        return None


def source_of(snapshot: Snapshot) -> str | None:
    if snapshot.has("servescope_"):
        return "servescope"
    if snapshot.has("nv_inference_"):
        return "triton"
    return None


def server_deltas(before: Snapshot, after: Snapshot, model: str) -> ServerDeltas | None:
    """What the server counted for `model` between two scrapes; None when neither format is there."""
    source = source_of(after)
    if source == "servescope":
        return _servescope_deltas(before, after, model)
    if source == "triton":
        return _triton_deltas(before, after, model)
    return None


def _delta(before: Snapshot, after: Snapshot, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


def _delta_by(before: Snapshot, after: Snapshot, name: str, label: str, **labels: str) -> dict[str, float]:
    b = before.by_label(name, label, **labels)
    a = after.by_label(name, label, **labels)
    return {k: a[k] - b.get(k, 0.0) for k in sorted(a)}


def _bucket_keys(buckets: dict[str, float]) -> dict[str, float]:
    """Upper bounds as results.py writes them ("1", "2", ..., "+Inf"), in increasing order."""

    def bound(key: str) -> float:
        return float(key.replace("+Inf", "inf"))

    out: dict[str, float] = {}
    for key in sorted(buckets, key=bound):
        value = bound(key)
        name = "+Inf" if value == float("inf") else (str(int(value)) if value.is_integer() else f"{value:g}")
        out[name] = buckets[key]
    return out


def _servescope_deltas(before: Snapshot, after: Snapshot, model: str) -> ServerDeltas:
    def d(name: str) -> float:
        return _delta(before, after, name, model=model)

    return ServerDeltas(
        requests=d("servescope_request_duration_seconds_count"),
        request_s_sum=d("servescope_request_duration_seconds_sum"),
        inferences=d("servescope_inferences_total"),
        batches=d("servescope_batches_total"),
        queue_count=d("servescope_queue_duration_seconds_count"),
        queue_s_sum=d("servescope_queue_duration_seconds_sum"),
        compute_count=d("servescope_compute_duration_seconds_count"),
        compute_s_sum=d("servescope_compute_duration_seconds_sum"),
        batch_size_sum=d("servescope_batch_size_sum"),
        batch_size_buckets=_bucket_keys(
            _delta_by(before, after, "servescope_batch_size_bucket", "le", model=model)
        ),
        rejected=_delta_by(before, after, "servescope_requests_rejected_total", "reason", model=model),
        requests_by_code=_delta_by(before, after, "servescope_requests_total", "code", model=model),
        source="servescope",
    )


def _triton_deltas(before: Snapshot, after: Snapshot, model: str) -> ServerDeltas:
    def d(name: str, **labels: str) -> float:
        return _delta(before, after, name, model=model, **labels)

    success = d("nv_inference_request_success")
    failure = d("nv_inference_request_failure")
    inferences = d("nv_inference_count")
    failures_by_reason = _delta_by(before, after, "nv_inference_request_failure", "reason", model=model)
    rejected = {"queue_full": failures_by_reason["REJECTED"]} if "REJECTED" in failures_by_reason else {}
    by_code = {"OK": success}
    if failure:
        by_code["FAILURE"] = failure  # Triton does not export gRPC codes; see docs/loadtest.md
    return ServerDeltas(
        requests=success + failure,
        request_s_sum=d("nv_inference_request_duration_us") / 1e6,
        inferences=inferences,
        batches=d("nv_inference_exec_count"),
        queue_count=success,
        queue_s_sum=d("nv_inference_queue_duration_us") / 1e6,
        compute_count=success,
        compute_s_sum=d("nv_inference_compute_infer_duration_us") / 1e6,
        batch_size_sum=inferences,
        batch_size_buckets={},
        rejected=rejected,
        requests_by_code=by_code,
        source="triton",
    )


def model_label(snapshot: Snapshot | None, model: str, label: str) -> str | None:
    """A label of servescope_model_info for `model` (e.g. precision, provider), if the server exports it."""
    if snapshot is None:
        return None
    for name, labels, _value in snapshot.samples:
        if name == "servescope_model_info" and labels.get("model") == model and label in labels:
            return labels[label]
    return None


def process_cpu_seconds(snapshot: Snapshot) -> float | None:
    """The server process's CPU seconds (prometheus_client's process collector), if exported."""
    values = [v for n, _ls, v in snapshot.samples if n == "process_cpu_seconds_total"]
    return values[0] if values else None


_GPU_NAMES = {
    "servescope": (
        "servescope_gpu_utilization_ratio",
        "servescope_gpu_memory_used_bytes",
        "servescope_gpu_memory_total_bytes",
        "servescope_gpu_power_watts",
        "gpu",
    ),
    "triton": (
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_power_usage",
        "gpu_uuid",
    ),
}


def gpu_usage(snapshots: list[Snapshot]) -> GpuUsage | None:
    """GPU gauges averaged over the snapshots (utilization averaged over GPUs, memory summed)."""
    if not snapshots:
        return None
    source = source_of(snapshots[-1]) or "servescope"
    util_name, used_name, total_name, power_name, label = _GPU_NAMES[source]
    utils, used, total, power, names = [], [], [], [], set()
    for snap in snapshots:
        per_gpu = snap.by_label(util_name, label)
        if not per_gpu:
            continue
        names.update(per_gpu)
        utils.append(sum(per_gpu.values()) / len(per_gpu))
        used.append(snap.total(used_name))
        total.append(snap.total(total_name))
        watts = snap.by_label(power_name, label)
        if watts:
            power.append(sum(watts.values()))
    if not utils:
        return None

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return GpuUsage(
        name=",".join(sorted(names)),
        utilization_ratio=mean(utils),
        memory_used_bytes=mean(used),
        memory_total_bytes=mean(total),
        power_watts=mean(power),
    )
