"""The peer benchmark's perf_analyzer driver: run records from a real perf_analyzer export."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from loadtest.perf_analyzer_export import read_export

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"
DATA = Path(__file__).resolve().parents[1] / "compat" / "data"


@pytest.fixture(scope="module")
def pa_driver():
    sys.path.insert(0, str(PEERS))
    try:
        import pa_driver

        yield pa_driver
    finally:
        sys.path.remove(str(PEERS))


def test_only_calls_after_the_warmup_and_inside_the_windows_count(pa_driver) -> None:
    export = read_export(DATA / "export-2.48-grpc-request-rate.json", batch=1)
    (experiment,) = export.experiments
    start_s = experiment.window_boundaries_s[0]
    sent_s = export.samples["end_s"] - export.samples["latency_s"]
    warmup_s = float(np.sort(sent_s)[1] - start_s)  # the first call sent falls in the warm-up, the rest count
    figures = pa_driver._figures(export, warmup_s)
    inside = export.samples[sent_s >= start_s + warmup_s]
    inside = inside[inside["end_s"] <= experiment.window_boundaries_s[-1]]
    assert figures["completed"] == len(inside) == len(export.samples) - 1
    assert figures["errors"] == {}
    assert figures["duration_s"] == round(experiment.window_boundaries_s[-1] - start_s - warmup_s, 3)
    assert figures["p50_s"] == pytest.approx(float(np.percentile(inside["latency_s"], 50)))
    assert figures["throughput_rps"] == pytest.approx(
        len(inside) / (experiment.window_boundaries_s[-1] - start_s - warmup_s)
    )


def test_the_input_file_holds_corpus_token_rows(pa_driver, tmp_path: Path) -> None:
    import json

    data = json.loads(pa_driver.input_file(tmp_path).read_text())["data"]
    assert len(data) == pa_driver.INPUT_ROWS
    assert all(
        len(row["tokens"]) == 100 and min(row["tokens"]) >= 0 and max(row["tokens"]) < 10000 for row in data
    )


@pytest.mark.slow
def test_a_point_against_a_real_servescope(pa_driver, model_repository: Path, tmp_path: Path) -> None:
    """One perf_analyzer point through the benchmark's own server launcher: a run record with its driver."""
    import servers
    import stats

    settings = servers.default_settings("servescope-1w")
    server = servers.start("servescope-1w", settings, model_repository, "sentiment_fp32", tmp_path / "server")
    try:
        record = pa_driver.measure(
            pa_driver.located(), server, "sentiment_fp32", 2, duration_s=1.0, warmup_s=0.3, folder=tmp_path
        )
        failed = pa_driver.measure(
            pa_driver.located(), server, "no_such_model", 2, duration_s=1.0, warmup_s=0.3, folder=tmp_path
        )
    finally:
        servers.stop(server)
    checked = stats.check_run({"round": 1, **record})
    assert checked["driver"] == "perf_analyzer" and checked["errors"] == {} and "error" not in record
    assert checked["completed"] > 0 and 0 < checked["p50_s"] <= checked["p99_s"] < 5
    assert checked["throughput_rps"] == pytest.approx(checked["completed"] / checked["duration_s"], rel=1e-3)
    assert 0.7 <= checked["duration_s"] <= 2.0  # three windows minus the warm-up
    assert record["client_cpu_ms_per_request"] > 0 and record["mean_batch_size"] >= 1
    assert failed["error"].startswith("perf_analyzer exited 99: error: failed to get model metadata:")
    assert "no_such_model" in failed["error"] and failed["completed"] == 0
