"""`servescope compare`: series matched by label, then by model across a settings change; changes beyond
the noise of the steps' windows; regressions gate with exit 1; unmatched series listed."""

from __future__ import annotations

import json

import pytest

from analysis.compare import compare_campaigns
from cli.main import main


def shapes(kit, *, batching: bool, compute_s: float, model: str = "sentiment_fp32") -> list:
    S = kit.Shape
    return [
        S(users=1, queue_s=0.0002, compute_s=compute_s, batch_mean=1, batching=batching, model=model),
        S(users=8, queue_s=0.004, compute_s=compute_s, batch_mean=4 if batching else 1, batching=batching,
          model=model),
    ]  # fmt: skip


def test_a_settings_change_is_matched_by_model_and_its_change_measured(handmade, kit):
    baseline = handmade(shapes(kit, batching=False, compute_s=0.002), name="base")
    candidate = handmade(shapes(kit, batching=True, compute_s=0.001), name="cand")
    comparison = compare_campaigns(baseline, candidate)
    (item,) = comparison.series
    assert (
        item.matched_by == "model" and "batching off" in item.baseline and "batching max 64" in item.candidate
    )
    assert [p.load for p in item.points] == ["1 user", "8 users"]
    eight = item.points[1]
    # 8 users / (4 + 2 + 0.5) ms against 8 / (4 + 1 + 0.5) ms: +18% throughput.
    assert eight.throughput_change == pytest.approx(6.5 / 5.5 - 1, rel=1e-2)
    assert (
        eight.noise == pytest.approx(0.0, abs=1e-9) and eight.throughput_significant
    )  # hand-made windows agree exactly
    assert item.worst_regression() is None
    assert comparison.unmatched_baseline == [] and comparison.unmatched_candidate == []


def test_regressions_fail_the_command_and_unmatched_series_are_listed(handmade, kit, capsys, tmp_path):
    fast = handmade(shapes(kit, batching=True, compute_s=0.001), name="fast")
    slow = handmade(
        shapes(kit, batching=True, compute_s=0.003)
        + shapes(kit, batching=True, compute_s=0.001, model="other"),
        name="slow",
    )
    assert main(["compare", str(fast), str(slow), "--output", str(tmp_path / "out")]) == 0
    assert (
        main(
            ["compare", str(fast), str(slow), "--fail-on-regression", "150", "--output", str(tmp_path / "o")]
        )
        == 0
    )
    capsys.readouterr()
    code = main(
        ["compare", str(fast), str(slow), "--fail-on-regression", "10", "--output", str(tmp_path / "o")]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "REGRESSION sentiment_fp32, batching max 64" in out and "worse by" in out
    assert "unmatched in the candidate: other, batching max 64" in out
    data = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert data["unmatched_candidate"] == [s for s in data["unmatched_candidate"] if s.startswith("other,")]
    assert data["series"][0]["worst_regression"]["what"].startswith("p99 at ")
    assert "<svg" in (tmp_path / "o" / "compare.html").read_text()
    assert (tmp_path / "o" / "compare.md").read_text().startswith("# servescope compare")


def test_window_spread_is_the_noise_a_change_must_beat(handmade, kit):
    baseline = handmade(shapes(kit, batching=True, compute_s=0.001), name="b")
    candidate = handmade(shapes(kit, batching=True, compute_s=0.00105), name="c")
    lines = (candidate / "steps.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:  # windows 10% apart: a 1-3% difference is noise
        rps = record["requests_per_s"]
        record["windows"] = [
            dict(w, throughput_rps=rps * f) for w, f in zip(record["windows"], (0.9, 1.0, 1.1), strict=True)
        ]
    (candidate / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (item,) = compare_campaigns(baseline, candidate).series
    assert all(not p.throughput_significant for p in item.points)
    assert all(p.noise == pytest.approx(0.1) for p in item.points)


def test_an_analysis_folder_stands_for_its_campaign_and_bad_folders_are_one_line(
    handmade, kit, capsys, tmp_path
):
    campaign = handmade(shapes(kit, batching=True, compute_s=0.001), name="x")
    assert main(["analyze", str(campaign), "--output", str(tmp_path / "an")]) == 0
    assert main(["compare", str(tmp_path / "an"), str(campaign), "--output", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "nothing"), str(campaign)]) == 2
    err = capsys.readouterr().err.strip()
    expected = f"{tmp_path / 'nothing'}: neither a campaign folder (campaign.json) nor an analysis folder"
    assert err == f"servescope compare: error: {expected} (summary.json)"
