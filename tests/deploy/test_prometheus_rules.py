"""deploy/prometheus: promtool accepts the configuration and the rules, and the alert unit tests pass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from servescope import metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
ALERT_TESTS = PROMETHEUS / "tests" / "alerts_test.yml"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=PROMETHEUS)


def test_promtool_check_config(promtool: str) -> None:
    done = run(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 2 rule files found" in done.stdout + done.stderr


def test_promtool_check_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", *(str(path) for path in RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (done.stdout + done.stderr).count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_of_the_alerts(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_unit_tests_cover_every_alert() -> None:
    alerts = {
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts == tested


def test_promtool_fails_a_wrong_expectation(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: a changed expected value is reported with the value actually computed."""
    text = ALERT_TESTS.read_text().replace("value: 0.05", "value: 0.06")
    text = text.replace("../rules/", str(PROMETHEUS / "rules") + "/")
    (tmp_path / "broken_test.yml").write_text(text)
    done = run(promtool, "test", "rules", str(tmp_path / "broken_test.yml"))
    assert done.returncode == 1
    assert "FAILED" in done.stdout + done.stderr and "5E-02" in done.stdout + done.stderr


def test_rules_use_only_metrics_of_the_contract() -> None:
    """Every servescope_* name in the rules is one servescope.metrics defines (the server exports those:
    tests/foundation/test_metrics_contract.py)."""
    text = "\n".join(path.read_text() for path in RULE_FILES)
    used = set(re.findall(r"(?<![:\w])servescope_[a-z0-9_]+", text))
    assert used, "no servescope metric in the rules?"
    known = metrics.metric_names() | {m.name for m in metrics.ALL_METRICS}
    assert sorted(used - known) == []


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_recording_rule_names_follow_the_convention(path: Path) -> None:
    """level:metric:operation, as in the Prometheus naming practices."""
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                name = rule["record"]
                assert re.fullmatch(r"[a-z_]+:servescope_[a-z0-9_]+:[a-z0-9_]+", name), name


def test_ensure_script_is_quiet_and_idempotent_when_installed(promtool: str) -> None:
    """`make test` calls it before pytest: with Prometheus present it must print nothing and succeed."""
    for _ in range(2):
        done = subprocess.run(
            ["bash", str(PROMETHEUS / "ensure-prometheus.sh")], capture_output=True, text=True, timeout=60
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
