"""The transport probe's budget: a server that answers one request per long batch window is probed with
fewer requests (never fewer than MIN_REQUESTS), a fast one with all that were asked."""

from __future__ import annotations

from loadtest.connection import Connection
from loadtest.server_proc import start_server
from loadtest.transport_probe import (
    BUDGET_PER_TRANSPORT_S,
    MIN_REQUESTS,
    probe_transports,
    requests_within_budget,
)
from servescope.settings import ServeFlags

WINDOW_US = 20_000


def test_the_budget_cuts_slow_requests_down_to_the_minimum_and_leaves_fast_ones() -> None:
    assert requests_within_budget(200, 0.001) == 200  # 200 ms of 1 s
    assert requests_within_budget(200, BUDGET_PER_TRANSPORT_S / 50) == 50
    assert requests_within_budget(200, 1.0) == MIN_REQUESTS  # one a second: the minimum still
    assert requests_within_budget(10, 1.0) == 10  # never more than asked
    assert requests_within_budget(200, 0.0) == 200


def test_a_fixed_20_ms_window_is_probed_with_the_requests_that_fit_the_budget(model_repository, tmp_path):
    server = start_server(
        model_repository,
        ["sentiment_fp32"],
        ServeFlags(batching=True, adaptive_delay=False, max_queue_delay_us=WINDOW_US),
        tmp_path,
        "server",
    )
    try:
        probe = probe_transports("sentiment_fp32", server.target, server.http_target, Connection())
    finally:
        server.stop()
    # Every request waits out the whole window, alone: at most budget / window of them fit.
    assert MIN_REQUESTS <= probe.requests <= BUDGET_PER_TRANSPORT_S / (WINDOW_US / 1e6)
    assert set(probe.p50_s) == {"grpc", "grpc_stream", "http"}
    assert all(p50 >= WINDOW_US / 1e6 for p50 in probe.p50_s.values()), probe.p50_s
