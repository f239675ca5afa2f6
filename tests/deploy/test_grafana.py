"""deploy/grafana: the committed dashboard is what the generator writes, and it is laid out as promised."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "servescope.json"
RULE_FILES = sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))


def load_generator():
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_committed_dashboard_is_the_generated_one() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == load_generator().render(), (
        "deploy/grafana/dashboards/servescope.json is stale: run python deploy/grafana/build_dashboard.py"
    )


def test_one_repeated_row_per_model_and_every_model_panel_selects_it() -> None:
    panels = dashboard()["panels"]
    rows = [p for p in panels if p["type"] == "row"]
    assert [row.get("repeat") for row in rows] == [None, "model"]
    model_row_y = rows[1]["gridPos"]["y"]
    model_panels = [p for p in panels if p["type"] != "row" and p["gridPos"]["y"] > model_row_y]
    titles = {p["title"] for p in model_panels}
    assert {
        "Traffic",
        "Errors by code",
        "Latency percentiles (server)",
        "Latency split: queue vs compute",
        "Batch size",
        "Queue depth and in-flight requests",
    } <= titles
    for panel in model_panels:
        for target in panel["targets"]:
            assert 'model="$model"' in target["expr"], (panel["title"], target["expr"])
    host_titles = {p["title"] for p in panels if p["type"] != "row" and p["gridPos"]["y"] < model_row_y}
    assert {"Server CPU", "Server memory", "GPU utilization", "GPU memory"} <= host_titles


def test_panels_do_not_overlap_and_ids_are_unique() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panel {panel['title']!r} overlaps another at {(x, y)}"
                cells.add((x, y))


def test_template_variables_and_datasource_provisioning_agree() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["model"]["multi"] and variables["model"]["includeAll"]
    assert variables["model"]["definition"] == "label_values(servescope_model_info, model)"
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == source["uid"]
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_reads_the_recording_rules() -> None:
    """Per-model panels use the recorded series, so dashboard, alerts and analysis agree."""
    recorded = {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"[a-z_]+:servescope_[a-z0-9_]+:[a-z0-9_]+", expr)}
    assert len(used) >= 12
    assert used <= recorded


def test_panel_thresholds_are_the_alert_thresholds() -> None:
    alerts = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load((RULE_FILES[0].parent / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }

    def threshold(expr: str) -> float:
        return float(re.search(r"> ([0-9.]+)", expr).group(1))

    panels = {p["title"]: p for p in dashboard()["panels"]}

    def red_line(title: str) -> float:
        return panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"]

    assert red_line("Latency percentiles (server)") == threshold(alerts["ServescopeP99LatencyAboveObjective"])
    assert red_line("Error ratio") == threshold(alerts["ServescopeErrorRatioHigh"])
    assert red_line("Queue time share") == threshold(alerts["ServescopeQueueSaturating"])
