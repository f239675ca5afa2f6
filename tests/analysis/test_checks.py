"""The analysis' methods on exact numbers: Little's law, the knee, the compute fit, the decomposition."""

from __future__ import annotations

import pytest

from analysis.batching import fit_compute, suggest_max_batch
from analysis.consistency import check_step, littles_law_ratio
from analysis.curves import Point, find_knee
from analysis.decompose import decompose


def test_littles_law_flags_a_step_with_inconsistent_numbers(kit):
    good = kit.make_step(0, kit.Shape(users=16, queue_s=0.002, compute_s=0.002, batch_mean=4))
    # Half the throughput that 16 users with this latency must produce: the numbers cannot all be right.
    bad = kit.make_step(
        1, kit.Shape(users=16, queue_s=0.002, compute_s=0.002, batch_mean=4, throughput_factor=0.5)
    )
    assert littles_law_ratio(good) == pytest.approx(1.0, abs=0.01)
    assert check_step(good) == []
    flags = check_step(bad)
    assert [f.check for f in flags] == ["littles_law"]
    assert "ratio 0.50" in flags[0].message
    assert "16 users were running" in flags[0].message
    # Above 1 is impossible for a closed loop.
    impossible = kit.make_step(
        2, kit.Shape(users=4, queue_s=0.0, compute_s=0.002, batch_mean=1, throughput_factor=1.3)
    )
    assert [f.check for f in check_step(impossible)] == ["littles_law"]


def test_flagged_steps_are_not_taken_as_the_best_point(handmade, kit):
    from analysis import analyze
    from analysis.reader import load_campaign

    S = kit.Shape
    folder = handmade(
        [
            S(users=1, queue_s=0.0001, compute_s=0.001, batch_mean=1),
            S(users=4, queue_s=0.0002, compute_s=0.001, batch_mean=2, throughput_factor=0.5),
            S(users=8, queue_s=0.0003, compute_s=0.001, batch_mean=3, stable=False),
            S(users=16, queue_s=0.0004, compute_s=0.001, batch_mean=4, errors={"UNAVAILABLE": 5000}),
        ]
    )
    summary = analyze(load_campaign(folder))
    checks = {(f.step_index, f.check) for f in summary.flags}
    assert checks == {(1, "littles_law"), (2, "unstable"), (3, "errors")}
    assert summary.curves[0].best_step_index == 0
    assert summary.verdicts[0].flagged_steps == [1, 2, 3]
    error_flag = next(f for f in summary.flags if f.check == "errors")
    assert "UNAVAILABLE=5000" in error_flag.message


def test_knee_is_the_last_point_before_latency_outgrows_throughput():
    def point(index: int, throughput: float, latency_ms: float) -> Point:
        return Point(index, index, throughput, throughput, 0.0, True, True, mean_latency_s=latency_ms / 1e3)

    # x2 throughput for +5% latency, x1.5 for +20%, then +5% throughput for +100% latency.
    points = [point(0, 100, 10), point(1, 200, 10.5), point(2, 300, 12.6), point(3, 315, 25.2)]
    assert find_knee(points) == 2
    # Latency noise below 10% on a flat curve is not a knee.
    assert find_knee([point(0, 100, 10), point(1, 101, 10.9)]) is None


def test_compute_fit_recovers_fixed_and_per_sample_cost(kit):
    steps = [
        kit.make_step(i, kit.Shape(users=u, queue_s=0.001, compute_s=0.0005 + 0.0001 * b, batch_mean=b))
        for i, (u, b) in enumerate(((1, 1.0), (8, 6.0), (32, 24.0), (64, 40.0)))
    ]
    fit, note = fit_compute("sentiment_fp32", "cpu", steps)
    assert note is None and fit is not None
    assert fit.fixed_s == pytest.approx(0.0005, rel=1e-6)
    assert fit.per_sample_s == pytest.approx(0.0001, rel=1e-6)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.stop_paying_batch == pytest.approx(45.0)  # 9 x 0.5 / 0.1
    assert fit.samples_per_s(45) == pytest.approx(0.9 / 0.0001)
    # Window 1 ms + two batches of 32 (2 x 3.7 ms) fits 10 ms; 64 is beyond the stop-paying size.
    assert suggest_max_batch(fit, objective_s=0.010, delay_s=0.001) == 32
    assert suggest_max_batch(fit, objective_s=0.005, delay_s=0.001) == 8


def test_compute_fit_needs_varied_batch_sizes(kit):
    steps = [
        kit.make_step(i, kit.Shape(users=u, queue_s=0.0, compute_s=0.001, batch_mean=1))
        for i, u in enumerate((1, 8))
    ]
    fit, note = fit_compute("sentiment_fp32", "cpu", steps)
    assert fit is None
    assert "span only 1.00..1.00" in note


def test_decomposition_adds_up_to_the_client_mean(kit):
    step = kit.make_step(
        0,
        kit.Shape(
            users=4,
            queue_s=0.003,
            compute_s=0.002,
            batch_mean=3,
            delay_us=1000,
            rest_s=0.0015,
            overhead_s=0.0005,
        ),
    )
    parts = decompose(step)
    assert parts.batching_delay_s == pytest.approx(0.001)
    assert parts.queueing_s == pytest.approx(0.002)
    assert parts.compute_s == pytest.approx(0.002)
    assert parts.server_overhead_s == pytest.approx(0.0005)
    assert parts.outside_server_s == pytest.approx(0.0015)
    total = parts.queueing_s + parts.batching_delay_s + parts.compute_s + parts.rest_s
    assert total == pytest.approx(parts.client_mean_s)
    # With batching off the whole queue time is queueing.
    off = decompose(
        kit.make_step(1, kit.Shape(users=4, queue_s=0.003, compute_s=0.002, batch_mean=1, batching=False))
    )
    assert off.batching_delay_s == 0.0
    assert off.queueing_s == pytest.approx(0.003)


def test_floor_faster_than_the_probe_says_the_probe_understated_the_machine(kit):
    from analysis.floor import analyze_floor
    from servescope.results import PeakProbe

    info = kit.make_info()
    info.peak = PeakProbe(matmul_flops_per_s=1e9, memory_bytes_per_s=5e9)
    step = kit.make_step(0, kit.Shape(users=8, queue_s=0.001, compute_s=0.002, batch_mean=4))
    (estimate,), notes = analyze_floor([step], info)
    # 4 samples x 10 MFLOP at 1 GFLOP/s = 40 ms "floor" against 2 ms measured.
    assert estimate.floor_s == pytest.approx(0.040)
    assert estimate.efficiency == pytest.approx(20.0)
    assert "the peak probe understated this machine" in estimate.note
    assert notes == []
    info.peak = None
    assert analyze_floor([step], info) == ([], ["campaign has no peak probe: no analytic floor"])
