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
