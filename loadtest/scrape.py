"""Scrape a server's Prometheus /metrics and turn two scrapes into ServerDeltas, CPU and GPU figures.

Which samples make which figure, for servescope's own metrics and for Triton's nv_* metrics, is the
contract of servescope.metrics (DELTA_SOURCES, GPU_SOURCES); this module only evaluates it on scrapes.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from servescope import metrics
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
    """Which metrics contract a scrape follows ("servescope", "triton"), or None."""
    for source, marker in metrics.SOURCE_MARKERS.items():
        if snapshot.has(marker):
            return source
    return None


def server_deltas(before: Snapshot, after: Snapshot, model: str) -> ServerDeltas | None:
    """What the server counted for `model` between two scrapes; None when neither format is there."""
    source = source_of(after)
    if source is None:
        return None
    values = {
        name: _evaluate(spec, before, after, model) for name, spec in metrics.DELTA_SOURCES[source].items()
    }
    return ServerDeltas(**values, source=source)


def _increase(before: Snapshot, after: Snapshot, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


def _evaluate(spec: metrics.Source, before: Snapshot, after: Snapshot, model: str) -> Any:
    """One ServerDeltas field from two scrapes, as servescope.metrics describes it."""
    model_labels = {metrics.MODEL_LABEL: model}
    if isinstance(spec, metrics.Total):
        return sum(
            term.scale * _increase(before, after, term.sample, **model_labels, **dict(term.labels))
            for term in spec.terms
        )
    if isinstance(spec, metrics.ByLabel):
        scope = model_labels if spec.per_model else {}
        b = before.by_label(spec.sample, spec.label, **scope)
        a = after.by_label(spec.sample, spec.label, **scope)
        values = {key: a[key] - b.get(key, 0.0) for key in a}
        if spec.rename:
            values = {new: values[old] for old, new in spec.rename if old in values}
        if spec.buckets:
            ordered = sorted(values, key=lambda key: float(key.replace("+Inf", "inf")))
            return {metrics.bound_key(key): values[key] for key in ordered}
        return {key: values[key] for key in sorted(values)}
    if isinstance(spec, metrics.Keyed):
        out = {key: _evaluate(total, before, after, model) for key, total in spec.entries}
        return {key: value for key, value in out.items() if value}
    return {}


def model_label(snapshot: Snapshot | None, model: str, label: str) -> str | None:
    """A label of servescope_model_info for `model` (e.g. precision, provider), if the server exports it."""
    if snapshot is None:
        return None
    for name, labels, _value in snapshot.samples:
        if name == metrics.MODEL_INFO.name and labels.get(metrics.MODEL_LABEL) == model and label in labels:
            return labels[label]
    return None


def process_cpu_seconds(snapshot: Snapshot) -> float | None:
    """The server process's CPU seconds (prometheus_client's process collector), if exported."""
    values = [v for n, _ls, v in snapshot.samples if n == metrics.PROCESS_CPU.name]
    return values[0] if values else None


def gpu_usage(snapshots: list[Snapshot]) -> GpuUsage | None:
    """GPU gauges averaged over the snapshots (utilization averaged over GPUs, memory summed)."""
    if not snapshots:
        return None
    source = source_of(snapshots[-1]) or "servescope"
    names = metrics.GPU_SOURCES[source]
    utils, used, total, power = [], [], [], []
    gpus: set[str] = set()
    for snap in snapshots:
        per_gpu = {
            gpu: value * names.utilization_scale
            for gpu, value in snap.by_label(names.utilization, names.label).items()
        }
        if not per_gpu:
            continue
        gpus.update(per_gpu)
        utils.append(sum(per_gpu.values()) / len(per_gpu))
        used.append(snap.total(names.memory_used))
        total.append(snap.total(names.memory_total))
        watts = snap.by_label(names.power, names.label)
        if watts:
            power.append(sum(watts.values()))
    if not utils:
        return None

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return GpuUsage(
        name=",".join(sorted(gpus)),
        utilization_ratio=mean(utils),
        memory_used_bytes=mean(used),
        memory_total_bytes=mean(total),
        power_watts=mean(power),
    )
