"""servescope.metrics is the one server-metrics contract: the server exports exactly its names, every
ServerDeltas field is mapped for every source, and the two readers (two scrapes; PromQL increase())
turn the same counts into the same ServerDeltas. Deploy files name no metric the contract lacks."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from analysis.prometheus import fetch_server_deltas
from loadtest.scrape import parse_metrics, server_deltas
from server.metrics import ServerMetrics
from servescope import metrics
from servescope.results import LoadSpec, ServerSettings, StepRecord, Window

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "m"


def test_every_results_field_is_mapped_for_every_source() -> None:
    for source, mapping in metrics.DELTA_SOURCES.items():
        assert sorted(mapping) == sorted(metrics.delta_fields()), source
    assert set(metrics.SOURCE_MARKERS) == set(metrics.DELTA_SOURCES) == set(metrics.GPU_SOURCES)


def test_the_server_exports_exactly_the_contracts_metrics() -> None:
    registry = CollectorRegistry()
    server = ServerMetrics(registry, process_metrics=False, gpu=False)
    server.add_model(MODEL, "1", "fp32", "CPUExecutionProvider")
    server[metrics.REQUESTS].labels(model=MODEL, code="OK").inc()
    families = {family.name: family for family in registry.collect()}
    exported = {sample.name for family in families.values() for sample in family.samples}
    expected = {m.name for m in metrics.SERVER_METRICS if m.kind != "histogram"}
    expected |= {
        sample
        for m in metrics.SERVER_METRICS
        if m.kind == "histogram"
        for sample in (m.bucket, m.sum, m.count)
    }
    expected |= {
        m.name.removesuffix("_total") + "_created" for m in metrics.SERVER_METRICS if m.kind == "counter"
    }
    expected |= {m.name + "_created" for m in metrics.SERVER_METRICS if m.kind == "histogram"}
    assert exported == expected
    for metric in metrics.SERVER_METRICS:
        family = families[metric.name.removesuffix("_total")]
        assert family.type == metric.kind and family.documentation == metric.help
        labelled = [s for s in family.samples if not s.name.endswith("_created")]
        assert all(set(s.labels) - {"le"} == set(metric.labels) for s in labelled), metric.name


# One counter or histogram per ServerDeltas figure, moved by a known amount between two scrapes.
def _servescope_scrapes() -> tuple[str, str]:
    texts = []
    for batches in (0, 1):
        registry = CollectorRegistry()
        server = ServerMetrics(registry, process_metrics=False, gpu=False)
        server.add_model(MODEL, "1", "fp32", "CPUExecutionProvider")
        for _ in range(batches):
            for _ in range(6):
                server[metrics.REQUEST_DURATION].labels(model=MODEL).observe(0.004)
                server[metrics.QUEUE_DURATION].labels(model=MODEL).observe(0.001)
                server[metrics.REQUESTS].labels(model=MODEL, code="OK").inc()
            server[metrics.COMPUTE_DURATION].labels(model=MODEL).observe(0.002)
            server[metrics.BATCH_SIZE].labels(model=MODEL).observe(6)
            server[metrics.INFERENCES].labels(model=MODEL).inc(6)
            server[metrics.BATCHES].labels(model=MODEL).inc()
            server[metrics.REJECTED].labels(model=MODEL, reason="queue_full").inc(2)
            server[metrics.REQUESTS].labels(model=MODEL, code="RESOURCE_EXHAUSTED").inc(2)
            server[metrics.EVENT_LOOP_LAG].labels(worker="0").observe(0.003)
            server[metrics.WORKER_CPU].labels(worker="0").inc(0.5)
        texts.append(generate_latest(registry).decode())
    return texts[0], texts[1]


TRITON_BEFORE = """# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} 10
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 1
nv_inference_request_failure{model="m",reason="OTHER",version="1"} 0
# TYPE nv_inference_count counter
nv_inference_count{model="m",version="1"} 40
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="m",version="1"} 5
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="m",version="1"} 50000
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="m",version="1"} 10000
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="m",version="1"} 30000
"""


def _triton_after() -> str:
    after = TRITON_BEFORE
    for name, old, new in (
        ("nv_inference_request_success", "10", "20"),
        ('nv_inference_request_failure{model="m",reason="REJECTED"', "1", "4"),
        ("nv_inference_count", "40", "80"),
        ("nv_inference_exec_count", "5", "10"),
        ("nv_inference_request_duration_us", "50000", "90000"),
        ("nv_inference_queue_duration_us", "10000", "12000"),
        ("nv_inference_compute_infer_duration_us", "30000", "50000"),
    ):
        after = re.sub(rf"^({re.escape(name)}[^\n]*}}) {old}$", rf"\g<1> {new}", after, flags=re.M)
    return after


class SnapshotPrometheus:
    """Answers PromQL `sum [by (label)] (increase(sample{...}[w]))` from two scrapes, as Prometheus
    would for counters that moved by exactly that much."""

    def __init__(self, before: str, after: str) -> None:
        self.before, self.after = parse_metrics(before), parse_metrics(after)
        self.queries: list[str] = []

    def query_at(self, promql: str, at_s: float, window_s: float) -> list[tuple[dict[str, str], float]]:
        self.queries.append(promql)
        match = re.fullmatch(r"sum(?: by \((\w+)\) )?\(increase\((\w+)(?:\{([^}]*)\})?\[\d+ms\]\)\)", promql)
        assert match, promql
        by, sample, selector = match.groups()
        labels = dict(re.findall(r'(\w+)="([^"]*)"', selector or ""))
        if not any(name in (sample, sample + "_total") for name, _labels, _value in self.after.samples):
            return []
        if by is None:
            return [({}, self.after.total(sample, **labels) - self.before.total(sample, **labels))]
        after = self.after.by_label(sample, by, **labels)
        before = self.before.by_label(sample, by, **labels)
        return [({by: key}, value - before.get(key, 0.0)) for key, value in after.items()]


def _step() -> StepRecord:
    from servescope.results import CpuUsage

    return StepRecord(
        step_index=0, model=MODEL, precision=None, client_batch_size=1, load=LoadSpec("closed", users=1),
        server_settings=ServerSettings(), started_at="2026-12-01T00:00:00+00:00", warmup_s=1.0,
        duration_s=3.0, completed=1, errors_by_code={}, requests_per_s=1.0, inferences_per_s=1.0,
        latency_s=None, stable=True, windows=[Window(3.0, 1, 1.0, 0.01)], server=None,
        cpu=CpuUsage(None, None, None, False), gpu=None,
    )  # fmt: skip


@pytest.mark.parametrize("source", ["servescope", "triton"])
def test_scrape_and_promql_read_every_field_the_same(source: str) -> None:
    before, after = _servescope_scrapes() if source == "servescope" else (TRITON_BEFORE, _triton_after())
    scraped = server_deltas(parse_metrics(before), parse_metrics(after), MODEL)
    assert scraped is not None and scraped.source == source
    prometheus = SnapshotPrometheus(before, after)
    queried = fetch_server_deltas(prometheus, _step())  # type: ignore[arg-type]
    assert queried is not None and queried.source == "prometheus"
    for field in metrics.delta_fields():
        assert getattr(queried, field) == pytest.approx(getattr(scraped, field)), field
    # Every figure moved, so a field read from the wrong sample would show.
    moved = {
        f: getattr(scraped, f) for f in metrics.delta_fields() if getattr(scraped, f) not in (0, 0.0, {})
    }
    unmapped = (
        {"batch_size_buckets", "loop_lag_s_sum", "loop_lag_count", "worker_cpu_s"}
        if source == "triton"
        else set()
    )
    assert set(metrics.delta_fields()) - set(moved) == unmapped


def test_servescope_figures_are_the_counts_that_moved() -> None:
    before, after = _servescope_scrapes()
    deltas = server_deltas(parse_metrics(before), parse_metrics(after), MODEL)
    assert deltas is not None
    assert dataclasses.asdict(deltas) | {"request_s_sum": 0, "queue_s_sum": 0, "compute_s_sum": 0} == {
        "requests": 6, "request_s_sum": 0, "inferences": 6, "batches": 1, "queue_count": 6,
        "queue_s_sum": 0, "compute_count": 1, "compute_s_sum": 0, "batch_size_sum": 6,
        "batch_size_buckets": {
            "1": 0, "2": 0, "4": 0, "8": 1, "16": 1, "32": 1, "64": 1, "128": 1, "+Inf": 1,
        },
        "rejected": {"cancelled": 0, "deadline": 0, "draining": 0, "invalid": 0, "queue_full": 2},
        "requests_by_code": {"OK": 6, "RESOURCE_EXHAUSTED": 2}, "source": "servescope",
        "loop_lag_s_sum": {"0": 0.003}, "loop_lag_count": {"0": 1}, "worker_cpu_s": {"0": 0.5},
    }  # fmt: skip
    assert deltas.request_s_sum == pytest.approx(0.024) and deltas.compute_s_sum == pytest.approx(0.002)


DEPLOY_FILES = [
    *sorted((REPO_ROOT / "deploy" / "prometheus").rglob("*.yml")),
    *sorted((REPO_ROOT / "deploy" / "k8s").rglob("*.yaml")),
    REPO_ROOT / "deploy" / "grafana" / "dashboards" / "servescope.json",
]


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_deploy_files_name_only_contract_metrics(path: Path) -> None:
    """Recording rules (level:metric:operation) aside, every servescope_* name is a contract metric."""
    used = set(re.findall(r"(?<![:\w])servescope_[a-z0-9_]+(?![:\w])", path.read_text()))
    known = metrics.metric_names()
    assert sorted(used - known) == []
