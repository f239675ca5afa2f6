"""Real short campaigns (`servescope campaign` against the exported model repository), each built to
show one known bottleneck, and the verdict the analysis draws from them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import analyze_campaign
from analysis.overview import build_overview
from loadtest.procs import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]

# Short steps: 0.5 s warm-up, three windows of 0.5 s, no retries.
STEP = "step: {warmup_s: 0.5, duration_s: 1.5, max_duration_s: 1.5, stability_percent: 50}"

CAMPAIGNS = {
    # Batching off and 32 users sending 8 samples each: 31 requests wait behind each one computed alone.
    # (8 samples make compute, not the gRPC transport, the longest stage even on a busy 2-core machine.)
    "queueing": (
        "client_batch_sizes: [8]\nload: {concurrency: [32]}",
        "server: [{batching: false}]",
        "latency_ms: 50",
    ),
    # A 20 ms batch window at one user: every request waits the whole window for company that never comes
    # (the server's adaptive delay, which would skip the wait, is switched off: Triton's behaviour).
    "delay": (
        "load: {concurrency: [1]}",
        "server: [{batching: true, adaptive_delay: false, max_batch_size: 64, max_queue_delay_us: 20000}]",
        "latency_ms: 50",
    ),
    # Two servers that differ only in the adaptive delay, 8 ms window, one user: the fixed window is
    # waited out by every request. Two series, each judged on its own.
    "adaptive": (
        "load: {concurrency: [1]}",
        "server: [{batching: true, max_queue_delay_us: 8000},"
        " {batching: true, max_queue_delay_us: 8000, adaptive_delay: false}]",
        "latency_ms: 50",
    ),
    # One user, a 100 us window, an objective of 200 ms: light load with room to spare.
    "healthy": (
        "load: {concurrency: [1]}",
        "server: [{batching: true, max_batch_size: 64, max_queue_delay_us: 100}]",
        "latency_ms: 200",
    ),
}


def run_campaign(name: str, folder: Path, repository: Path) -> Path:
    load, server, objective = CAMPAIGNS[name]
    spec = folder / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\nmodels: [sentiment_fp32]\n{load}\n{server}\n{STEP}\n"
        f"objective: {{percentile: p99, {objective}}}\n"
    )
    output = folder / f"{name}-campaign"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "campaign", str(spec), "--output", str(output),
         "--model-repository", str(repository)],
        cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def analyze_real(name: str, tmp_path: Path, repository: Path) -> dict:
    campaign = run_campaign(name, tmp_path, repository)
    summary = analyze_campaign(campaign, tmp_path / f"{name}-analysis")
    assert summary.left_out == []
    html = (tmp_path / f"{name}-analysis" / "report.html").read_text()
    assert html.count('<div class="chart">') == 5
    check_first_screen(summary, html)
    data = json.loads((tmp_path / f"{name}-analysis" / "summary.json").read_text())
    assert len(data["verdicts"]) == 1
    return data["verdicts"][0]


def check_first_screen(summary, html: str) -> None:
    """The report opens with one row and one latency bar for the campaign's one series, whose parts are
    the based-on step's decomposition and add up to its client mean."""
    (row,) = build_overview(summary)
    (verdict,) = summary.verdicts
    step = next(s for s in summary.steps if s.step_index == verdict.based_on_steps[0])
    assert (row.step_index, row.mean_s) == (step.step_index, step.mean_s)
    assert row.load == step.load
    compute_s = step.decomposition.compute_s
    parts_s = sum(getattr(step.decomposition, s.part.field) or 0.0 for s in row.segments if s.part.field)
    if compute_s is not None and parts_s <= step.mean_s:  # not scaled down to the mean: shown as measured
        assert {s.part.field: s.seconds for s in row.segments}["compute_s"] == pytest.approx(compute_s)
    assert sum(s.percent for s in row.segments) == 100 and all(s.share >= 0 for s in row.segments)
    assert sum(s.seconds for s in row.segments) == pytest.approx(step.mean_s)
    assert html.count('class="bar"') == 1 and html.index("At a glance") < html.index("<h2>Verdict</h2>")


@pytest.mark.slow
def test_batching_off_under_high_concurrency_is_queueing(tmp_path, model_repository):
    verdict = analyze_real("queueing", tmp_path, model_repository)
    assert verdict["kind"] == "queueing", verdict
    assert "batching is off" in verdict["reasons"][0]
    assert verdict["evidence"]["queueing_share"] > 0.5
    top = verdict["recommendations"][0]
    assert top["text"].startswith("enable dynamic batching (--max-batch-size "), top
    # The steps computed batch 1 only; the compute probe before them gave the curve the gain comes from.
    assert "the compute probe before the steps" in top["text"], top
    assert top["change"]["setting"] == "batching" and top["change"]["value"] is True
    assert top["prediction"]["expected"] > 1.05 * top["prediction"]["current"], top


@pytest.mark.slow
def test_large_queue_delay_at_concurrency_one_is_batching_delay_bound(tmp_path, model_repository):
    verdict = analyze_real("delay", tmp_path, model_repository)
    assert verdict["kind"] == "batching-delay-bound", verdict
    # The server waits the whole window before it runs a batch of one.
    assert verdict["evidence"]["batch_size_mean"] == pytest.approx(1.0)
    assert verdict["evidence"]["batching_delay_share"] >= 0.4
    assert verdict["recommendations"][0]["text"].startswith("lower max_queue_delay_us from 20000 to ")


@pytest.mark.slow
def test_light_load_is_healthy(tmp_path, model_repository, kit):
    verdict = analyze_real("healthy", tmp_path, model_repository)
    if kit.contended(tmp_path / "healthy-campaign"):  # other processes took the CPU: that is the verdict
        assert verdict["kind"] in {"machine-contended", "generator-starved"}, verdict
        return
    assert verdict["kind"] == "healthy", verdict
    assert verdict["evidence"]["p99_s"] <= 0.8 * 0.2
    assert verdict["evidence"]["error_ratio"] == 0.0


@pytest.mark.slow
def test_servers_differing_only_in_adaptive_delay_are_two_series(tmp_path, model_repository, kit):
    campaign = run_campaign("adaptive", tmp_path, model_repository)
    summary = analyze_campaign(campaign, tmp_path / "adaptive-analysis")
    steps = {row.step_index: row.series for row in summary.steps}
    assert len(set(steps.values())) == 2, steps
    fixed = next(v for v in summary.verdicts if "fixed delay" in v.series)
    adaptive = next(v for v in summary.verdicts if "fixed delay" not in v.series)
    for verdict in (fixed, adaptive):
        # The verdict quotes, and recommends from, steps of its own series only.
        quoted = {verdict.evidence["peak_step"], *verdict.based_on_steps}
        for text in [r.text for r in verdict.recommendations] + verdict.reasons:
            quoted.update(int(n) for n in re.findall(r"\bstep (\d+)", text))
        assert {steps[i] for i in quoted} == {verdict.series}, (verdict.series, quoted)
    if fixed.kind in {"machine-contended", "generator-starved"} and kit.contended(campaign):
        pytest.skip(f"other processes took the CPU: {fixed.kind}, the planted delay cannot be seen")
    assert fixed.kind == "batching-delay-bound", fixed
