"""`servescope analyze` end to end on hand-made campaigns: the three reports, the terminal verdict, and
bad input (missing or half-written folders, unknown schema versions, steps with nothing completed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli.main import main
from servescope.results import READABLE_VERSIONS

READABLE = ", ".join(map(str, READABLE_VERSIONS))


def analyze_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--log-level", "WARNING", "analyze", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def mixed_campaign(handmade, kit):
    S = kit.Shape
    shapes = [
        S(users=1, queue_s=0.0, compute_s=0.0008, batch_mean=1, batching=False),
        S(users=32, queue_s=0.030, compute_s=0.0008, batch_mean=1, batching=False),
        S(users=1, queue_s=0.001, compute_s=0.0008, batch_mean=1),
        S(users=32, queue_s=0.003, compute_s=0.002, batch_mean=20),
    ]
    return handmade(shapes)


def test_reports_are_written_and_the_verdict_printed(capsys, mixed_campaign):
    output = mixed_campaign / "out"
    code, out, err = analyze_cli(capsys, str(mixed_campaign), "--output", str(output))
    assert code == 0, err
    assert "verdict: queueing / under-provisioned" in out
    assert "verdict: healthy: objective met with headroom" in out
    assert f"Report: {output / 'report.html'}" in out
    summary = json.loads((output / "summary.json").read_text())
    assert {v["kind"] for v in summary["verdicts"]} == {"queueing", "healthy"}
    assert [v["kind"] for v in summary["verdicts_by_model"]["sentiment_fp32"]] == ["queueing", "healthy"]
    assert summary["left_out"] == []
    assert summary["objective"] == {"percentile": "p99", "latency_s": 0.05}
    assert len(summary["steps"]) == 4
    markdown = (output / "report.md").read_text()
    assert markdown.index("## Verdict") < markdown.index("## Steps")
    assert "**queueing / under-provisioned" in markdown
    assert "| 3 | sentiment_fp32 | 32 users |" in markdown


def test_html_report_is_self_contained_with_verdict_first(capsys, mixed_campaign):
    output = mixed_campaign / "out"
    assert analyze_cli(capsys, str(mixed_campaign), "--output", str(output))[0] == 0
    html = (output / "report.html").read_text()
    # Five charts, and before the verdicts the first screen's latency bar of each of the two series.
    assert html.count('<div class="chart">') == 5
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="bar"') == 2
    assert (
        html.index('<h2 id="at-a-glance">')
        < html.index("<h2>Verdict</h2>")
        < html.index('<div class="chart">')
    )
    # Nothing to fetch: no scripts, stylesheets, images or fonts from anywhere; links only to ids inside.
    for pattern in (r"<script", r"<link", r"<img", r"\bsrc=", r"url\((?!#)", r"@import"):
        assert not re.search(pattern, html), pattern
    assert set(re.findall(r'href="([^"#][^"]*)"', html)) == set()
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    for title in ("Throughput vs latency", "Latency decomposition", "Batch size vs concurrency",
                  "Compute time vs batch size", "Utilization vs throughput"):  # fmt: skip
        assert f"<h2>{title}</h2>" in html


def test_default_output_is_inside_the_campaign_folder(capsys, mixed_campaign):
    code, out, _ = analyze_cli(capsys, str(mixed_campaign))
    assert code == 0
    assert (mixed_campaign / "analysis" / "report.html").is_file()
    assert str(mixed_campaign / "analysis" / "report.html") in out


def test_missing_folder_is_a_usage_error(capsys, tmp_path):
    code, _, err = analyze_cli(capsys, str(tmp_path / "nope"))
    assert code == 2
    assert err.strip() == f"servescope analyze: error: CAMPAIGN_DIR '{tmp_path / 'nope'}' is not a folder"


def test_folder_without_campaign_json_is_a_usage_error(capsys, tmp_path):
    code, _, err = analyze_cli(capsys, str(tmp_path))
    assert code == 2
    assert "not a campaign folder (no campaign.json)" in err
    assert len(err.strip().splitlines()) == 1


def test_half_written_campaign_json_is_a_usage_error(capsys, mixed_campaign):
    path = mixed_campaign / "campaign.json"
    path.write_text(path.read_text()[:100])
    code, _, err = analyze_cli(capsys, str(mixed_campaign))
    assert code == 2
    assert "campaign.json: not valid JSON" in err


def test_unknown_schema_version_of_the_campaign_is_refused(capsys, mixed_campaign):
    path = mixed_campaign / "campaign.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    code, _, err = analyze_cli(capsys, str(mixed_campaign))
    assert code == 2
    assert f"schema_version 99 is not supported (readable: {READABLE})" in err


def test_campaign_without_steps_file_is_a_usage_error(capsys, mixed_campaign):
    (mixed_campaign / "steps.jsonl").unlink()
    code, _, err = analyze_cli(capsys, str(mixed_campaign))
    assert code == 2
    assert "no steps.jsonl (the campaign recorded no step)" in err


def test_bad_steps_are_left_out_and_listed_with_their_reason(capsys, mixed_campaign, kit):
    steps_file = mixed_campaign / "steps.jsonl"
    lines = steps_file.read_text().splitlines()
    future = json.loads(lines[2])
    future["schema_version"] = 7
    lines[2] = json.dumps(future)
    nothing = json.loads(lines[0])
    nothing.update(completed=0, errors_by_code={"UNAVAILABLE": 12}, latency_s=None, note="target unreachable")
    lines[0] = json.dumps(nothing)
    lines.append(lines[3][: len(lines[3]) // 2])  # the campaign was cut off while writing a line
    steps_file.write_text("\n".join(lines) + "\n")

    output = mixed_campaign / "out"
    code, out, err = analyze_cli(capsys, str(mixed_campaign), "--output", str(output))
    assert code == 0, err
    summary = json.loads((output / "summary.json").read_text())
    left_out = {item["where"]: item["reason"] for item in summary["left_out"]}
    assert left_out == {
        "steps.jsonl:3": f"schema_version 7 is not supported (readable: {READABLE})",
        "steps.jsonl:5": "not valid JSON (half-written line?)",
        "step 0 (sentiment_fp32, 32 users, client batch 1)".replace("32 users", "1 user"):
            "no request completed (errors: UNAVAILABLE=12); note: target unreachable",
    }  # fmt: skip
    assert [row["step_index"] for row in summary["steps"]] == [1, 3]
    assert "Left out 3 step(s):" in out
    html = (output / "report.html").read_text()
    assert "<h2>Steps left out</h2>" in html
    assert "no request completed (errors: UNAVAILABLE=12); note: target unreachable" in html
    assert "## Steps left out" in (output / "report.md").read_text()


def test_campaign_where_nothing_completed_writes_a_report_and_fails(capsys, handmade, kit):
    folder = handmade([kit.Shape(users=1, queue_s=0.0, compute_s=0.001, batch_mean=1)])
    step = json.loads((folder / "steps.jsonl").read_text())
    step.update(completed=0, errors_by_code={"DEADLINE_EXCEEDED": 40}, latency_s=None)
    (folder / "steps.jsonl").write_text(json.dumps(step) + "\n")
    code, out, err = analyze_cli(capsys, str(folder), "--output", str(folder / "out"))
    assert code == 1
    assert (
        err.strip()
        == f"servescope analyze: error: no step of {folder} could be analysed; the report lists why"
    )
    assert "no verdict: no step could be analysed" in out
    html = (folder / "out" / "report.html").read_text()
    assert "No verdict: no step could be analysed" in html
    assert "no request completed (errors: DEADLINE_EXCEEDED=40)" in html


def test_output_that_is_a_file_is_a_usage_error(capsys, mixed_campaign):
    target = mixed_campaign / "file.txt"
    target.write_text("x")
    code, _, err = analyze_cli(capsys, str(mixed_campaign), "--output", str(target))
    assert code == 2
    assert "exists and is not a folder" in err


def test_help_names_defaults_and_units(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--prometheus-url" in text and "--output" in text and "CAMPAIGN_DIR" in text


def test_cli_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, analysis.cli; "
        "heavy = [m for m in ('matplotlib', 'locust', 'loadtest', 'numpy', 'jinja2') if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.stdout.strip() == "[]"


def test_analysis_never_imports_locust_or_the_load_tester():
    import ast

    package = Path(__file__).resolve().parents[2] / "analysis"
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"locust", "loadtest", "gevent"}), sorted(imported)
    assert "analysis" in imported and "servescope" in imported


def test_interrupted_campaign_is_said_so(capsys, mixed_campaign):
    path = mixed_campaign / "campaign.json"
    data = json.loads(path.read_text())
    data["interrupted"] = True
    path.write_text(json.dumps(data))
    code, out, _ = analyze_cli(capsys, str(mixed_campaign), "--output", str(mixed_campaign / "out"))
    assert code == 0
    assert "Note: the campaign was interrupted: only the steps it finished are here" in out
    assert "<b>The campaign was interrupted.</b>" in (mixed_campaign / "out" / "report.html").read_text()
