"""Generate deploy/grafana/dashboards/servescope.json, the Grafana dashboard for servescope.

The dashboard is data, so it is built from a short description here rather than edited by hand in
JSON; `python deploy/grafana/build_dashboard.py` rewrites the committed file, and a test checks that
the committed file is what this script produces. Standard library plus the metrics contract
(servescope.metrics), which names every metric read directly.

Layout: one row for the host (server process CPU and memory, GPU utilization, memory and power), then
one row per model variant: the row repeats over the `$model` template variable. Per-model panels read
the recording rules of deploy/prometheus/rules/recording.yml, so the dashboard, the alerts and the
analysis agree on every number.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for the contract
from servescope import metrics

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "servescope.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
UID = "servescope-overview"
# The thresholds drawn on the panels are those of deploy/prometheus/rules/alerts.yml.
LATENCY_OBJECTIVE_S = 0.05


def _target(expr: str, legend: str, ref_id: str, *, fmt: str = "time_series") -> dict:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "refId": ref_id,
        "format": fmt,
        "range": True,
    }


def _timeseries(
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    unit: str,
    *,
    stack: bool = False,
    min_value: float | None = 0,
    max_value: float | None = None,
    threshold: float | None = None,
) -> dict:
    defaults: dict = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 30 if stack else 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    if threshold is not None:  # drawn as a red line: the objective or alert threshold
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": threshold}],
        }
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
    }


def _heatmap(title: str, description: str, expr: str) -> dict:
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "options": {
            "calculate": False,
            "yAxis": {"unit": "short"},
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Blues", "steps": 64},
            "tooltip": {"show": True, "yHistogram": True},
        },
        "fieldConfig": {"defaults": {}, "overrides": []},
        "targets": [_target(expr, "{{le}}", "A", fmt="heatmap")],
    }


def _stat(title: str, description: str, expr: str, legend: str, unit: str) -> dict:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
            "colorMode": "none",
        },
        "targets": [_target(expr, legend, "A")],
    }


def _row(title: str, *, repeat: str | None = None) -> dict:
    row = {"type": "row", "title": title, "collapsed": False, "panels": []}
    if repeat:
        row["repeat"] = repeat
    return row


def host_panels() -> list[dict]:
    """Panels for the machine: not per model (the GPU gauges exist only where NVML finds a GPU)."""
    job = 'job="servescope"'
    return [
        _timeseries(
            "Server CPU",
            "CPU used by each servescope server process, in cores (1 = one core fully busy).",
            [(f"rate({metrics.PROCESS_CPU.name}{{{job}}}[$__rate_interval])", "{{instance}}")],
            "short",
        ),
        _timeseries(
            "Server memory",
            "Resident memory of each servescope server process.",
            [(f"{metrics.PROCESS_MEMORY.name}{{{job}}}", "{{instance}}")],
            "bytes",
        ),
        _timeseries(
            "GPU utilization",
            "Share of time a kernel ran on the GPU (NVML). Empty on machines without a GPU.",
            [(metrics.GPU_UTILIZATION.name, "GPU {{gpu}} {{instance}}")],
            "percentunit",
            max_value=1,
        ),
        _timeseries(
            "GPU memory",
            "GPU memory used and total (NVML). Empty on machines without a GPU.",
            [
                (metrics.GPU_MEMORY_USED.name, "used GPU {{gpu}} {{instance}}"),
                (metrics.GPU_MEMORY_TOTAL.name, "total GPU {{gpu}} {{instance}}"),
            ],
            "bytes",
        ),
        _timeseries(
            "GPU power",
            "Board power draw (NVML). Empty on machines without a GPU.",
            [(metrics.GPU_POWER.name, "GPU {{gpu}} {{instance}}")],
            "watt",
        ),
    ]


def model_panels() -> list[dict]:
    """Panels of the repeated per-model row; every query selects model="$model"."""
    m = 'model="$model"'
    return [*_traffic_panels(m), *_latency_panels(m), *_batch_panels(m)]


def _traffic_panels(m: str) -> list[dict]:
    """What the model is and what it serves: its info, requests and inferences, errors."""
    return [
        _stat(
            "Model",
            "Version, precision and execution provider the server loaded (servescope_model_info).",
            f"{metrics.MODEL_INFO.name}{{{m}}}",
            "v{{version}} {{precision}} {{provider}}",
            "none",
        ),
        _timeseries(
            "Traffic",
            "Requests per second and inferences (samples) per second. Inferences/requests = client "
            "batch size.",
            [
                (f"model:servescope_requests:rate1m{{{m}}}", "requests/s"),
                (f"model:servescope_inferences:rate1m{{{m}}}", "inferences/s"),
                (f"model:servescope_batches:rate1m{{{m}}}", "executed batches/s"),
            ],
            "reqps",
        ),
        _timeseries(
            "Errors by code",
            "Requests per second that ended with a gRPC status other than OK, by code, and the server's "
            "rejections by reason (queue_full = load shedding, deadline, invalid, draining).",
            [
                (f'model_code:servescope_requests:rate1m{{{m},code!="OK"}}', "{{code}}"),
                (f"model_reason:servescope_requests_rejected:rate1m{{{m}}}", "rejected: {{reason}}"),
            ],
            "reqps",
        ),
        _timeseries(
            "Error ratio",
            "Share of requests not OK (alert above 1 %).",
            [(f"model:servescope_request_errors:ratio_rate1m{{{m}}}", "error ratio")],
            "percentunit",
            threshold=0.01,
        ),
    ]


def _latency_panels(m: str) -> list[dict]:
    """Where a request's time goes on the server: percentiles, queue against compute."""
    return [
        _timeseries(
            "Latency percentiles (server)",
            "Server-side request duration, from arrival to response, from the histogram (objective: p99 "
            "<= 50 ms, as in the load campaigns).",
            [
                (f"model:servescope_request_duration_seconds:p50_1m{{{m}}}", "p50"),
                (f"model:servescope_request_duration_seconds:p90_1m{{{m}}}", "p90"),
                (f"model:servescope_request_duration_seconds:p99_1m{{{m}}}", "p99"),
            ],
            "s",
            threshold=LATENCY_OBJECTIVE_S,
        ),
        _timeseries(
            "Latency split: queue vs compute",
            "Mean time a request waits in the batching queue (batching delay included) and mean compute "
            "time of one executed batch, stacked. Much more queue than compute: the instances are "
            "saturated.",
            [
                (f"model:servescope_queue_duration_seconds:mean_1m{{{m}}}", "queue (per request)"),
                (f"model:servescope_compute_duration_seconds:mean_1m{{{m}}}", "compute (per batch)"),
            ],
            "s",
            stack=True,
        ),
        _timeseries(
            "Queue time share",
            "Fraction of the server-side request time spent queueing (alert above 80 % for 10 minutes).",
            [(f"model:servescope_queue_time:share_1m{{{m}}}", "queue share")],
            "percentunit",
            max_value=1,
            threshold=0.8,
        ),
    ]


def _batch_panels(m: str) -> list[dict]:
    """How the batcher merges: batch sizes, their distribution, the queue and what is in flight."""
    return [
        _timeseries(
            "Batch size",
            "Samples per executed batch: mean and p99. Close to 1 under load means the batcher finds "
            "nothing to merge (raise --max-queue-delay-us or the concurrency).",
            [
                (f"model:servescope_batch_size:mean_1m{{{m}}}", "mean"),
                (f"model:servescope_batch_size:p99_1m{{{m}}}", "p99"),
            ],
            "short",
        ),
        _heatmap(
            "Batch size distribution",
            "Executed batches per second by batch size bucket (1, 2, 4, ... 128).",
            f"sum by (le) (rate({metrics.BATCH_SIZE.bucket}{{{m}}}[$__rate_interval]))",
        ),
        _timeseries(
            "Queue depth and in-flight requests",
            "Requests waiting in the queue and requests inside the server (queued + computing). In-flight "
            "per pod drives the Kubernetes autoscaler.",
            [
                (f"sum({metrics.QUEUE_DEPTH.name}{{{m}}})", "queue depth"),
                (f"sum({metrics.INFLIGHT.name}{{{m}}})", "in flight"),
            ],
            "short",
        ),
    ]


def _layout(panels: list[dict], y: int, next_id: int) -> tuple[list[dict], int, int]:
    """Place panels three per line (stat panels narrow), return them with the next y and id."""
    placed = []
    x = 0
    line_height = 8
    for panel in panels:
        width = 4 if panel["type"] == "stat" else 8
        if x + width > 24:
            x = 0
            y += line_height
        panel["gridPos"] = {"h": line_height, "w": width, "x": x, "y": y}
        panel["id"] = next_id
        next_id += 1
        x += width
        placed.append(panel)
    return placed, y + line_height, next_id


def build() -> dict:
    """The whole dashboard as a JSON-ready dict."""
    panels: list[dict] = []
    next_id = 1
    y = 0
    for title, repeat, row_panels in (
        ("Host: server processes and GPUs", None, host_panels()),
        ("Model $model", "model", model_panels()),
    ):
        row = _row(title, repeat=repeat)
        row["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
        row["id"] = next_id
        next_id += 1
        panels.append(row)
        placed, y, next_id = _layout(row_panels, y + 1, next_id)
        panels.extend(placed)
    return {
        "uid": UID,
        "title": "servescope: inference server",
        "description": "Traffic, errors, latency split, batching and resources of servescope, per model "
        "variant.",
        "tags": ["servescope", "inference", "grpc"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "time": {"from": "now-30m", "to": "now"},
        "timezone": "utc",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                    "hide": 0,
                    "refresh": 1,
                },
                {
                    "name": "model",
                    "label": "Model",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": f"label_values({metrics.MODEL_INFO.name}, model)", "refId": "model"},
                    "definition": f"label_values({metrics.MODEL_INFO.name}, model)",
                    "multi": True,
                    "includeAll": True,
                    "current": {"text": ["All"], "value": ["$__all"]},
                    "refresh": 2,
                    "sort": 1,
                    "hide": 0,
                },
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
