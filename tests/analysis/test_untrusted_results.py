"""Untrusted campaign results: a step of steps.jsonl with wrong types or nesting is left out with a reason
that names the line, the key and the value (cut), and the analysis goes on; a bad campaign.json is exit
2 with one such line. Never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cli.main import main


def analyze_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--log-level", "WARNING", "analyze", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def campaign(handmade, kit):
    S = kit.Shape
    return handmade([S(users=1, queue_s=0.001, compute_s=0.0008, batch_mean=1),
                     S(users=8, queue_s=0.002, compute_s=0.001, batch_mean=4),
                     S(users=32, queue_s=0.003, compute_s=0.003, batch_mean=20)])  # fmt: skip


def edit(change: Callable[[dict], None]) -> Callable[[str], str]:
    def apply(line: str) -> str:
        data = json.loads(line)
        change(data)
        return json.dumps(data)

    return apply


def put(path: str, value: object) -> Callable[[str], str]:
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return edit(change)


# (case id, how line 2 of steps.jsonl is broken, the reason it is left out with)
STEPS: list[tuple[str, Callable[[str], str], str]] = [
    ("string-completed", put("completed", "many"), "completed: 'many' must be an integer"),
    ("list-cpu", put("cpu", [1, 2]), "cpu: expected an object for CpuUsage, found list [1, 2]"),
    ("string-p99", put("latency_s.p99", "fast"), "latency_s.p99: 'fast' must be a number"),
    ("int-model", put("model", 7), "model: 7 must be a string"),
    ("bool-users", put("load.users", True), "load.users: True must be an integer"),
    (
        "string-error-count",
        put("errors_by_code", {"UNAVAILABLE": "3"}),
        "errors_by_code.UNAVAILABLE: '3' must be",
    ),
    ("dict-windows", put("windows", {"a": 1}), "windows: {'a': 1} must be a list"),
    ("list-rejected", put("server.rejected", [0]), "server.rejected: [0] must be an object"),
    ("null-stable", put("stable", None), "stable: None must be true or false"),
    ("huge-model-list", put("model", ["m" * (1 << 20)]), "model: ['mmmm"),
    ("deep", lambda line: "[" * 100_000 + "]" * 100_000, "not valid JSON (nested too deeply)"),
    ("not-an-object", lambda line: "[1, 2, 3]", "expected a JSON object, found list [1, 2, 3]"),
    (
        "not-utf8",
        lambda line: line.replace('"model"', '"mod\udcffel"'),
        "not valid JSON (not UTF-8 text at offset",
    ),
    (
        "too-long",
        lambda line: '{"x": "' + "y" * (5 << 20) + '"}',
        "longer than 4194304 bytes, not a step record",
    ),
]


@pytest.mark.parametrize(("case", "breaker", "reason"), STEPS, ids=[s[0] for s in STEPS])
def test_a_bad_step_is_left_out_with_line_key_and_value(capsys, campaign, case, breaker, reason) -> None:
    steps_file = campaign / "steps.jsonl"
    lines = steps_file.read_text().splitlines()
    lines[1] = breaker(lines[1])
    steps_file.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    output = campaign / "out"
    code, _, err = analyze_cli(capsys, str(campaign), "--output", str(output))
    assert code == 0, err[-2000:]
    assert "Traceback" not in err
    summary = json.loads((output / "summary.json").read_text())
    left_out = {item["where"]: item["reason"] for item in summary["left_out"]}
    assert list(left_out) == ["steps.jsonl:2"]
    assert reason in left_out["steps.jsonl:2"], left_out
    assert len(left_out["steps.jsonl:2"]) < 600
    assert [row["step_index"] for row in summary["steps"]] == [0, 2]


# (case id, how campaign.json is broken, the fragment of the one error line)
CAMPAIGNS: list[tuple[str, Callable[[str], str], str]] = [
    (
        "string-cores",
        put("machine.cpu_count", "two"),
        "campaign.json: machine.cpu_count: 'two' must be an integer",
    ),
    ("int-name", put("name", 5), "campaign.json: name: 5 must be a string"),
    ("list-models", put("models", [1]), "campaign.json: models: [1] must be an object"),
    (
        "string-peak",
        put("peak", "fast"),
        "campaign.json: peak: expected an object for PeakProbe, found str 'fast'",
    ),
    (
        "nested-deep",
        lambda text: "[" * 100_000 + "]" * 100_000,
        "campaign.json: not valid JSON (nested too deeply)",
    ),
    ("a-list", lambda text: "[]", "campaign.json: expected a JSON object, found list []"),
    ("huge-version", put("schema_version", "v" * 100_000), "schema_version 'vvvv"),
]


@pytest.mark.parametrize(("case", "breaker", "fragment"), CAMPAIGNS, ids=[c[0] for c in CAMPAIGNS])
def test_a_bad_campaign_json_exits_2_with_one_line(capsys, campaign, case, breaker, fragment) -> None:
    path = campaign / "campaign.json"
    path.write_text(breaker(path.read_text()))
    code, _, err = analyze_cli(capsys, str(campaign), "--output", str(campaign / "out"))
    lines = err.strip().splitlines()
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("servescope analyze: error: "), err[-2000:]
    assert fragment in lines[0]
    assert len(lines[0]) < 1000
