"""The compute probe against a real server: the server's own compute by batch size, one request at a time,
read from ModelStatistics; and how the analysis uses it when the steps never batched."""

from __future__ import annotations

import pytest

from analysis.batch_curve import MIN_EXECUTIONS, build_curves
from loadtest.compute_probe import REQUESTS_PER_SIZE, probe_compute, sizes_for
from loadtest.connection import Connection
from loadtest.server_proc import start_server
from servescope.results import ServerSettings, StepRecord
from servescope.settings import ServeFlags


def test_sizes_are_powers_of_two_up_to_the_limit_with_the_limit_itself() -> None:
    assert sizes_for(None) == [] and sizes_for(1) == []
    assert sizes_for(2) == [1, 2]
    assert sizes_for(16) == [1, 2, 4, 8, 16]
    assert sizes_for(24) == [1, 2, 4, 8, 16, 24]
    assert sizes_for(1000) == [1, 2, 4, 8, 16, 32, 64]


def test_the_probe_reads_the_servers_compute_per_batch_size(running_server) -> None:
    figures = probe_compute(
        "sentiment_fp32", running_server.target, Connection(), max_batch_size=8, budget_s=30
    )
    assert figures is not None and list(figures) == ["1", "2", "4", "8"]
    for size, (count, seconds) in figures.items():
        # One request at a time: every request is its own batch of its own size (plus one warm-up each).
        assert count == REQUESTS_PER_SIZE + 1, (size, count)
        assert 0 < seconds / count < 1.0
    # The same model computes 8 samples in less than 8 times one sample's time (an LSTM batches well).
    per_sample = {int(size): seconds / count / int(size) for size, (count, seconds) in figures.items()}
    assert per_sample[8] < per_sample[1]


def test_a_short_budget_stops_before_the_large_sizes(running_server) -> None:
    figures = probe_compute(
        "sentiment_fp32", running_server.target, Connection(), max_batch_size=64, budget_s=0
    )
    assert figures is not None and list(figures) == ["1"]


def test_a_model_that_cannot_batch_is_not_probed(running_server) -> None:
    assert probe_compute("sentiment_fp32", running_server.target, Connection(), max_batch_size=1) is None


def test_the_probe_works_with_batching_off(model_repository, tmp_path) -> None:
    """Batching off still runs a client's batch of 8 as one batch of 8: the probe sees every size."""
    server = start_server(
        model_repository, ["sentiment_fp32"], ServeFlags(batching=False), tmp_path, "server"
    )
    try:
        figures = probe_compute("sentiment_fp32", server.target, Connection(), max_batch_size=4, budget_s=30)
    finally:
        server.stop()
    assert figures is not None and list(figures) == ["1", "2", "4"]


def _step(model: str, by_size: dict[str, list[float]] | None) -> StepRecord:
    step = StepRecord.__new__(StepRecord)
    step.model = model
    step.server_settings = ServerSettings(device="cpu")
    step.compute_by_batch_size = by_size
    return step


def test_the_probe_stands_in_only_where_the_steps_saw_one_size() -> None:
    probe = {"1": [25.0, 0.025], "4": [25.0, 0.05], "16": [25.0, 0.1]}
    # Batching off: the steps saw batch 1 only, so the probe's curve is the model's.
    curves = build_curves([_step("m", {"1": [500.0, 0.5]})], {"m": probe})
    assert curves["m"].source == "probe" and curves["m"].device == "cpu"
    assert curves["m"].samples_per_s(16) == pytest.approx(16 / 0.004)
    assert curves["m"].basis == "the compute probe before the steps"
    # Batches of several sizes under load: the steps' own curve wins.
    loaded = {"1": [100.0, 0.1], "8": [100.0, 0.4]}
    curves = build_curves([_step("m", loaded)], {"m": probe})
    assert curves["m"].source == "steps" and sorted(curves["m"].points) == [1, 8]
    # Too few executions of a size: left out, and one size left is no curve.
    curves = build_curves([_step("m", None)], {"m": {"1": [25.0, 0.025], "4": [MIN_EXECUTIONS - 1.0, 0.01]}})
    assert "m" not in curves
