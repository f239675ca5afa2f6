"""The report's first screen (analysis/overview.py): the table of series and the latency bar of each, in
the HTML, Markdown and terminal reports, on hand-made campaigns whose numbers are known (the real
campaigns of test_real_campaigns.py check theirs too)."""

from __future__ import annotations

import html as html_lib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from analysis import analyze_campaign, overview
from analysis.decompose import Decomposition
from analysis.overview import Part, build_overview, latency_segments
from analysis.pipeline import format_verdict

REPO_ROOT = Path(__file__).resolve().parents[2]
OFF = "sentiment_fp32, batching off, 1 instance, 1 worker, cpu, client batch 1, closed loop"
ON = "sentiment_fp32, batching max 64, delay 1000 us, 1 instance, 1 worker, cpu, client batch 1, closed loop"


@pytest.fixture
def two_series(handmade, kit, tmp_path):
    """Batching off (queueing at 32 users) and batching on (healthy), two steps each, analysed."""
    S = kit.Shape
    folder = handmade([
        S(users=1, queue_s=0.0, compute_s=0.0008, batch_mean=1, batching=False),
        S(users=32, queue_s=0.030, compute_s=0.0008, batch_mean=1, batching=False),
        S(users=1, queue_s=0.001, compute_s=0.0008, batch_mean=1),
        S(users=32, queue_s=0.003, compute_s=0.002, batch_mean=20),
    ])  # fmt: skip
    summary = analyze_campaign(folder, tmp_path / "out")
    return summary, tmp_path / "out"


def test_one_row_per_series_with_its_verdict_step_best_and_top_change(two_series):
    summary, output = two_series
    off, on = build_overview(summary)
    data = json.loads((output / "summary.json").read_text())
    top = data["verdicts"][0]["recommendations"][0]
    predicted = f"predicted {top['prediction']['current']:.0f} -> {top['prediction']['expected']:.0f} req/s"
    # Step 1: 32 users / 31.3 ms mean = 1022.4 req/s over 10 s, batch 1.
    assert (off.series, off.kind, off.verdict, off.step_index, off.load) == (
        OFF, "queueing", "queueing / under-provisioned", 1, "32 users",
    )  # fmt: skip
    assert off.best == "1022 inf/s, 1022 req/s (step 1, 32 users)"
    assert off.recommendation.startswith("batching: off -> on (--max-batch-size ")
    assert off.recommendation.endswith(f"); {predicted} at 32 users")
    assert top["prediction"]["expected"] > top["prediction"]["current"] > 0
    assert (on.series, on.kind, on.verdict, on.step_index) == (ON, "healthy", "healthy", 3)
    assert on.mean_s == pytest.approx(0.0055)
    assert on.best == "5818 inf/s, 5818 req/s (step 3, 32 users)"  # 32 users / 5.5 ms
    # The healthy series changes nothing: its top recommendation in its own words, up to the first colon.
    assert (
        on.recommendation
        == "up to 5818 inferences/s met p99 <= 50 ms (step 3); the highest load tested was 32 users"
    )


def test_the_bars_split_the_client_mean_into_shares_that_sum_to_one(two_series):
    summary, _ = two_series
    off, on = build_overview(summary)
    # Batching off: no window segment; queue 30, compute 0.8, in-server 0.1, outside 0.4 of 31.3 ms.
    assert [s.part.short for s in off.segments] == ["queue", "compute", "server", "outside"]
    assert [round(s.seconds * 1e3, 6) for s in off.segments] == [30.0, 0.8, 0.1, 0.4]
    assert [s.percent for s in off.segments] == [96, 3, 0, 1]
    assert off.bar_text == "queue 96% | compute 3% | server <1% | outside 1%"
    # Batching on: 3 ms in the queue is the 1 ms window plus 2 ms of queueing.
    assert [s.part.short for s in on.segments] == ["queue", "window", "compute", "server", "outside"]
    assert [round(s.seconds * 1e3, 6) for s in on.segments] == [2.0, 1.0, 2.0, 0.1, 0.4]
    for row in (off, on):
        assert sum(s.share for s in row.segments) == pytest.approx(1.0, abs=1e-9)
        assert sum(s.seconds for s in row.segments) == pytest.approx(row.mean_s, rel=1e-9)
        assert sum(s.percent for s in row.segments) == 100
        assert all(s.share > 0 and s.seconds > 0 for s in row.segments)
        assert all(abs(s.percent - s.share * 100) < 1 for s in row.segments)
        assert row.note is None


def test_server_figures_above_the_client_mean_are_scaled_to_it_never_negative():
    parts = Decomposition(0.010, 0.006, 0.0, 0.006, 0.0, 0.0, 0.0)
    segments, note = latency_segments(parts)
    assert [(s.part.short, round(s.seconds * 1e3, 9), s.percent) for s in segments] == [
        ("queue", 5.0, 50), ("compute", 5.0, 50),
    ]  # fmt: skip
    assert note == "the server's figures add up to 12.00 ms, above the client mean; scaled to it"
    negative = Decomposition(0.010, -0.002, 0.001, 0.004, 0.005, None, None)
    segments, note = latency_segments(negative)
    # A negative part counts as nothing; without the server's request time the rest stays unsplit.
    assert [(s.part.label, round(s.seconds * 1e3, 9), s.percent) for s in segments] == [
        ("batch window", 1.0, 10), ("compute", 4.0, 40), ("rest (not split)", 5.0, 50),
    ]  # fmt: skip
    assert note is None


def test_figures_that_are_not_numbers_never_break_the_bar(handmade, kit, tmp_path):
    inf = float("inf")
    segments, note = latency_segments(Decomposition(0.010, 0.002, 0.0, inf, 0.0, 0.0, 0.0))
    assert [(s.part.short, s.percent) for s in segments] == [("queue", 20), ("rest", 80)]
    assert note == "compute not a finite number: left in the rest"
    assert latency_segments(Decomposition(float("nan"), 0.001, 0.0, 0.001, 0.0, 0.0, 0.0)) == (
        [], "no latency to split (client mean nan s)",
    )  # fmt: skip
    # JSON's NaN reaches the reports through the reader: the page is still written, with no bar.
    folder = handmade([kit.Shape(users=4, queue_s=0.001, compute_s=0.001, batch_mean=2)])
    steps = folder / "steps.jsonl"
    steps.write_text(steps.read_text().replace('"mean": 0.0025', '"mean": NaN'))
    (row,) = build_overview(analyze_campaign(folder, tmp_path / "out"))
    assert row.segments == [] and row.note == "no latency to split (client mean nan s)"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "no latency to split (client mean nan s)" in page and 'class="bar"' not in page


def test_a_step_without_server_metrics_is_one_unsplit_rest(handmade, kit, tmp_path):
    folder = handmade([kit.Shape(users=4, queue_s=0.001, compute_s=0.001, batch_mean=2, with_server=False)])
    (row,) = build_overview(analyze_campaign(folder, tmp_path / "out"))
    assert [(s.part.label, s.percent) for s in row.segments] == [("rest (not split)", 100)]
    assert row.segments[0].seconds == row.mean_s
    assert row.note == "server metrics not recorded for this step"
    assert row.best == "1600 inf/s, 1600 req/s (step 0, 4 users)"  # 4 users / 2.5 ms


def test_no_step_within_the_objective_is_said_so(handmade, kit, tmp_path):
    shape = kit.Shape(users=4, queue_s=0.001, compute_s=0.001, batch_mean=2)  # p99 3.75 ms
    folder = handmade([shape], info=kit.make_info(objective_s=0.002))
    (row,) = build_overview(analyze_campaign(folder, tmp_path / "out"))
    assert row.best == "none met the objective"
    assert "| none met the objective |" in (tmp_path / "out" / "report.md").read_text()


def test_a_new_measured_part_is_one_entry(monkeypatch):
    """The request timeline's parts plug in as entries of LATENCY_PARTS, each a Decomposition field."""

    @dataclass
    class Timed(Decomposition):
        response_path_s: float | None = None

    timed = Timed(0.010, 0.002, 0.001, 0.004, 0.003, 0.0005, 0.0005, response_path_s=0.001)
    part = Part("response_path_s", "response path", "response", "#17becf")
    monkeypatch.setattr(overview, "LATENCY_PARTS", (*overview.LATENCY_PARTS, part))
    segments, _ = latency_segments(timed)
    assert [(s.part.short, s.percent) for s in segments] == [
        ("queue", 20), ("window", 10), ("compute", 40), ("server", 5), ("outside", 5), ("response", 10),
        ("rest", 10),
    ]  # fmt: skip


def _cells(row_html: str) -> list[str]:
    return [
        html_lib.unescape(re.sub(r"<[^>]+>", "", c))
        for c in re.findall(r"<td[^>]*>(.*?)</td>", row_html, re.S)
    ]


def test_html_opens_with_the_table_and_the_bars_before_the_verdicts(two_series):
    summary, output = two_series
    page = (output / "report.html").read_text()
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", page)
    assert headings == [
        "At a glance", "Verdict", "Throughput vs latency", "Latency decomposition",
        "Batch size vs concurrency", "Compute time vs batch size", "Utilization vs throughput",
        "Analytic floor", "Consistency", "Steps",
    ]  # fmt: skip
    glance = page[page.index('<h2 id="at-a-glance">') : page.index("<h2>Verdict</h2>")]
    rows = [_cells(r) for r in re.findall(r'<tr data-kind="[^"]+">(.*?)</tr>', glance, re.S)]
    off, on = build_overview(summary)
    assert rows == [
        [OFF, "queueing / under-provisioned", "step 1, 32 users", off.best, off.recommendation],
        [ON, "healthy", "step 3, 32 users", on.best, on.recommendation],
    ]
    # Flags (to copy) and changes never wrap inside a cell.
    assert (
        '(<span class="nowrap">--max-batch-size 32</span> <span class="nowrap">--max-queue-delay-us' in glance
    )
    assert '<span class="nowrap">off -&gt; on</span>' in glance
    bars = re.findall(r'<svg xmlns="http://www.w3.org/2000/svg" class="bar".*?</svg>', glance, re.S)
    assert len(bars) == 2
    for bar in bars:
        widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="0" width="([\d.]+)"', bar)]
        assert sum(widths) == pytest.approx(1000, abs=0.05) and min(widths) > 0
    assert "queueing 30.00 ms (96%)" in bars[0] and "in-server overhead 0.10 ms (&lt;1%)" in bars[0]
    assert "batch window 1.00 ms (18%)" in bars[1]


def test_markdown_and_terminal_carry_the_same_first_screen(two_series):
    summary, output = two_series
    off, _ = build_overview(summary)
    markdown = (output / "report.md").read_text()
    headings = re.findall(r"^## (.*)$", markdown, re.M)
    assert headings[:2] == ["At a glance", "Verdict"] and headings[-1] == "Steps"
    assert (
        f"| {OFF} | queueing / under-provisioned | step 1, 32 users | {off.best} | {off.recommendation} |"
        in markdown
    )
    assert (
        f"- {OFF}: mean 31.30 ms at step 1: `queue 30.00 ms 96% | compute 0.80 ms 3% | server 0.10 ms <1% | "
        "outside 0.40 ms 1%`" in markdown
    )
    text = format_verdict(summary).splitlines()
    start = text.index("At a glance:")
    assert text[start + 1 : start + 5] == [
        f"  {OFF}",
        "    queueing / under-provisioned at step 1 (32 users); best 1022 inf/s, 1022 req/s "
        "(step 1, 32 users)",
        "    mean 31.30 ms: queue 96% | compute 3% | server <1% | outside 1%",
        f"    top: {off.recommendation}",
    ]
    assert text.index(f"- {OFF}") > start + 8  # the detailed verdicts follow, unchanged


def test_untrusted_model_names_are_escaped_in_the_bars(handmade, kit, tmp_path):
    folder = handmade([kit.Shape(users=2, queue_s=0.001, compute_s=0.001, batch_mean=2, model="m<i>&x")])
    analyze_campaign(folder, tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "m<i>" not in page and "m&lt;i&gt;&amp;x" in page
