"""The peer benchmark's result parsing, summaries, ratios, target checks and sweep choice.

Pure functions only: no servers and no peer environments are needed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

STATS_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "peers" / "stats.py"


def _load_stats():
    spec = importlib.util.spec_from_file_location("servescope_peers_stats", STATS_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


stats = _load_stats()


def run(server: str, concurrency: int, round_index: int, rps: float, p50_ms: float, p99_ms: float) -> dict:
    return {
        "round": round_index,
        "server": server,
        "driver": "lean",
        "concurrency": concurrency,
        "completed": int(rps * 10),
        "errors": {},
        "duration_s": 10.0,
        "throughput_rps": rps,
        "p50_s": p50_ms / 1e3,
        "p99_s": p99_ms / 1e3,
    }


RUNS = [
    # servescope: three rounds at concurrency 1 and 32
    run("servescope", 1, 1, 500.0, 1.9, 3.0),
    run("servescope", 1, 2, 520.0, 1.8, 2.5),
    run("servescope", 1, 3, 480.0, 2.1, 4.0),
    run("servescope", 32, 1, 3000.0, 10.0, 20.0),
    run("servescope", 32, 2, 3300.0, 9.0, 18.0),
    run("servescope", 32, 3, 2700.0, 11.0, 25.0),
    run("triton", 1, 1, 200.0, 4.8, 8.0),
    run("triton", 1, 2, 210.0, 4.6, 7.0),
    run("triton", 1, 3, 190.0, 5.0, 9.0),
    run("triton", 32, 1, 1500.0, 20.0, 40.0),
    run("triton", 32, 2, 1600.0, 19.0, 30.0),
    run("triton", 32, 3, 1400.0, 21.0, 50.0),
    run("mlserver", 1, 1, 250.0, 4.0, 6.0),
    run("mlserver", 32, 1, 700.0, 45.0, 90.0),
]


def test_spread_is_median_min_max_and_ignores_non_finite() -> None:
    assert stats.spread([3.0, 1.0, 2.0]) == stats.Spread(2.0, 1.0, 3.0, 3)
    assert stats.spread([4.0, 1.0]) == stats.Spread(2.5, 1.0, 4.0, 2)
    assert stats.spread([1.0, math.nan, None, 5.0]) == stats.Spread(3.0, 1.0, 5.0, 2)
    empty = stats.spread([])
    assert empty.count == 0 and math.isnan(empty.median)


def test_summarize_groups_by_server_and_concurrency() -> None:
    summary = stats.summarize(RUNS)
    assert sorted(summary) == ["mlserver", "servescope", "triton"]
    assert sorted(summary["servescope"]) == [1, 32]
    s32 = summary["servescope"][32]
    assert s32["throughput_rps"] == stats.Spread(3000.0, 2700.0, 3300.0, 3)
    assert s32["p50_s"].median == pytest.approx(0.010)
    assert s32["p99_s"].min == pytest.approx(0.018) and s32["p99_s"].max == pytest.approx(0.025)
    assert summary["mlserver"][1]["p50_s"].count == 1


def test_ratios_are_servescope_over_peer_of_medians() -> None:
    table = stats.ratios(stats.summarize(RUNS))
    assert sorted(table) == ["mlserver", "triton"]
    assert table["triton"][32]["throughput"] == pytest.approx(3000.0 / 1500.0)
    assert table["triton"][32]["p50"] == pytest.approx(10.0 / 20.0)
    assert table["triton"][32]["p99"] == pytest.approx(20.0 / 40.0)
    assert table["triton"][1]["p50"] == pytest.approx(1.9 / 4.8)
    assert table["mlserver"][32]["throughput"] == pytest.approx(3000.0 / 700.0)


def test_ratios_skip_concurrencies_the_reference_lacks_and_zero_denominators() -> None:
    runs = [run("servescope", 1, 1, 100.0, 1.0, 2.0), run("triton", 1, 1, 0.0, 1.0, 2.0)]
    runs.append(run("triton", 8, 1, 50.0, 1.0, 2.0))
    table = stats.ratios(stats.summarize(runs))
    assert list(table["triton"]) == [1]
    assert math.isnan(table["triton"][1]["throughput"])
    assert stats.ratios(stats.summarize([run("triton", 1, 1, 1.0, 1.0, 1.0)])) == {}


def test_targets_met_and_missed_with_amounts() -> None:
    summary = stats.summarize(RUNS)
    verdicts = {v.name: v for v in stats.check_targets(summary, stats.ratios(summary))}
    assert verdicts["c32 throughput >= 1.5x Triton"].met
    assert verdicts["c32 throughput >= 1.5x Triton"].detail == "2.00x (target 1.50x)"
    assert verdicts["c32 p99 <= Triton"].met
    assert verdicts["c1 p50 <= 0.5x triton"].met  # 1.9 of 4.8 ms
    assert verdicts["c1 p50 <= 0.5x mlserver"].met
    assert verdicts["c1 p50 <= 0.5x mlserver"].detail == "1.90 ms vs 4.00 ms (0.47x)"
    assert not verdicts["c64 throughput >= 1.5x Triton"].met  # c64 not in these runs
    assert verdicts["c64 throughput >= 1.5x Triton"].detail == "not measured"

    slower = [r for r in RUNS if r["server"] != "servescope"]
    slower += [run("servescope", 32, 1, 2000.0, 20.0, 45.0), run("servescope", 1, 1, 300.0, 4.5, 6.0)]
    summary = stats.summarize(slower)
    verdicts = {v.name: v for v in stats.check_targets(summary, stats.ratios(summary))}
    assert not verdicts["c32 throughput >= 1.5x Triton"].met
    assert verdicts["c32 throughput >= 1.5x Triton"].detail == "1.33x (target 1.50x)"
    assert not verdicts["c32 p99 <= Triton"].met
    assert verdicts["c32 p99 <= Triton"].detail == "p99 ratio 1.12 (target <= 1.00)"
    assert not verdicts["c1 p50 <= 0.5x triton"].met  # 4.5 of 4.8 ms
    assert verdicts["c1 p50 <= 0.5x triton"].detail == "4.50 ms vs 4.80 ms (0.94x)"


def test_targets_not_measured_are_not_met() -> None:
    summary = stats.summarize([run("servescope", 1, 1, 100.0, 1.0, 2.0)])
    verdicts = stats.check_targets(summary, stats.ratios(summary))
    assert [(v.name, v.met, v.detail) for v in verdicts] == [
        ("c32 throughput >= 1.5x Triton", False, "not measured"),
        ("c32 p99 <= Triton", False, "not measured"),
        ("c64 throughput >= 1.5x Triton", False, "not measured"),
        ("c64 p99 <= Triton", False, "not measured"),
    ]


def test_choose_settings_takes_the_lowest_p99_among_the_near_best_throughputs() -> None:
    entries = [
        {"c1_p50_s": 0.002, "c32_throughput_rps": 1000.0, "c32_p99_s": 0.030},
        {"c1_p50_s": 0.004, "c32_throughput_rps": 1500.0, "c32_p99_s": 0.060},
        {"c1_p50_s": 0.008, "c32_throughput_rps": 1450.0, "c32_p99_s": 0.040},  # within 5%, lower p99
        {"c1_p50_s": 0.001, "c32_throughput_rps": 1300.0, "c32_p99_s": 0.010},  # > 5% below the best
        {"error": "did not start"},
    ]
    assert stats.choose_settings(entries) == 2
    assert stats.choose_settings([{"error": "x"}]) == 0
    assert stats.best_c1_entry(entries) == entries[3]
    assert stats.best_c1_entry([{"error": "x"}]) is None


def test_results_file_round_trip_and_checks(tmp_path: Path) -> None:
    summary = stats.summarize(RUNS)
    data = {
        "schema": stats.RESULTS_SCHEMA,
        "runs": RUNS,
        "summary": stats.summary_to_json(summary),
        "ratios": stats.ratios_to_json(stats.ratios(summary)),
    }
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(data))
    loaded = stats.load_results(path)
    assert loaded["summary"]["servescope"]["32"]["throughput_rps"] == {
        "median": 3000.0,
        "min": 2700.0,
        "max": 3300.0,
        "count": 3,
    }
    assert loaded["ratios"]["triton"]["32"]["throughput"] == pytest.approx(2.0)
    assert stats.summarize(loaded["runs"]) == summary


def test_results_with_no_completed_requests_keep_null_percentiles(tmp_path: Path) -> None:
    broken = dict(RUNS[0], completed=0, throughput_rps=0, p50_s=None, p99_s=None, errors={"UNAVAILABLE": 5})
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema": stats.RESULTS_SCHEMA, "runs": [broken]}))
    loaded = stats.load_results(path)
    assert loaded["runs"][0]["throughput_rps"] == 0.0
    assert math.isnan(loaded["runs"][0]["p50_s"])
    summary = stats.summarize(loaded["runs"])
    assert summary["servescope"][1]["p50_s"].count == 0
    assert stats.summary_to_json(summary)["servescope"]["1"]["p50_s"]["median"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        (json.dumps({"schema": "other/1", "runs": []}), "schema 'other/1' is not 'servescope-peers/2'"),
        (json.dumps({"schema": "servescope-peers/2", "runs": {}}), "field 'runs' should be a list"),
        (
            json.dumps({"schema": "servescope-peers/2", "runs": [{"server": "triton"}]}),
            "runs[0]: missing field(s) ['round', 'driver', 'concurrency'",
        ),
        (
            json.dumps({"schema": "servescope-peers/2", "runs": [dict(RUNS[0], concurrency="32")]}),
            "runs[0]: field 'concurrency' should be int, found '32'",
        ),
        (
            json.dumps({"schema": "servescope-peers/2", "runs": [dict(RUNS[0], concurrency=0)]}),
            "runs[0]: concurrency must be >= 1, found 0",
        ),
    ],
)
def test_load_results_rejects_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(stats.PeerResultsError) as caught:
        stats.load_results(path)
    assert message in str(caught.value)


def test_load_results_requires_the_driver_and_reads_version_1_files_as_lean(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    without = {k: v for k, v in RUNS[0].items() if k != "driver"}
    path.write_text(json.dumps({"schema": "servescope-peers/2", "runs": [without]}))
    with pytest.raises(stats.PeerResultsError, match=r"runs\[0\]: missing field\(s\) \['driver'\]"):
        stats.load_results(path)
    path.write_text(json.dumps({"schema": "servescope-peers/1", "runs": [without]}))
    assert stats.load_results(path)["runs"][0]["driver"] == "lean"
    committed = STATS_FILE.parent / "results" / "latest.json"
    if committed.exists():
        assert {run["driver"] for run in stats.load_results(committed)["runs"]} <= {"lean", "perf_analyzer"}


def test_load_results_missing_file(tmp_path: Path) -> None:
    with pytest.raises(stats.PeerResultsError, match="no such results file"):
        stats.load_results(tmp_path / "absent.json")


def test_table_lists_servescope_first_with_ratios() -> None:
    summary = stats.summarize(RUNS)
    table = stats.format_table(summary, stats.ratios(summary))
    lines = table.splitlines()
    assert lines[2].split()[:3] == ["1", "servescope", "500"]
    assert "3000 [2700-3300]" in table
    assert "servescope/triton: throughput 2.00x, p50 0.50x, p99 0.50x" in table
    assert all(line == line.rstrip() for line in lines)


def test_markdown_table_has_one_row_per_point_and_ratios_on_peer_rows() -> None:
    summary = stats.summarize(RUNS)
    rows = stats.format_markdown(summary, stats.ratios(summary)).splitlines()
    assert rows[0].startswith("| concurrency | server |")
    assert len(rows) == 2 + 6  # header, then three servers at concurrency 1 and 32
    assert rows[2] == "| 1 | servescope | 500 [480-520] | 1.90 [1.80-2.10] | 3.00 [2.50-4.00] |  |"
    assert (
        "| 32 | triton | 1500 [1400-1600] | 20.00 [19.00-21.00] | 40.00 [30.00-50.00] | 2.00x, 0.50x, 0.50x |"
        in rows
    )
