"""Prometheus with the project's configuration, scraping a real `servescope serve` under load.

One server (the three model variants of the `model_repository` fixture) and one Prometheus (the
Debian binary, on loopback, its own free port and a temporary data folder) whose configuration is
deploy/prometheus/prometheus.yml with the target, the intervals (1 s) and the rule paths rewritten.
A few seconds of requests (valid ones at batch 1 and 4, and some with token ids out of range, so that
the error series exist), then through Prometheus' HTTP API: every series the dashboard and the
recording rules use has data, every dashboard query parses and returns a result, every rule group
evaluates without error. The GPU series are allowed to be empty: there is no GPU on this machine and
the server exports servescope_gpu_* only where NVML finds one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml

from loadtest.procs import free_port
from loadtest.server_proc import ServerStartError, serve_command, spawn_ready, stop_server
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "servescope.json"
MODELS = ("sentiment_fp32", "sentiment_int8", "sentiment_fp16")
LOAD_DURATION_S = 6.0
# Grafana's $__rate_interval is at least 4 scrape intervals; the test scrapes every second.
RATE_INTERVAL = "10s"
GPU_METRIC = re.compile(r"servescope_gpu_|gpu:servescope_gpu")


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_error = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last error: {last_error})")


@pytest.fixture(scope="module")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real server on loopback with free ports; yields {grpc_port, metrics_port, pid}."""
    folder = tmp_path_factory.mktemp("server")
    ready_file = folder / "ready.json"
    command = [
        *serve_command(), "serve", "--model-repository", str(model_repository),
        "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0", "--http-port", "0",
        "--device", "cpu", "--grace-period-s", "5", "--ready-file", str(ready_file),
    ]  # fmt: skip
    try:
        process, ready, _log = spawn_ready(command, ready_file, folder / "server.log", 120.0)
    except ServerStartError as exc:
        pytest.fail(str(exc))
    try:
        yield ready
    finally:
        stop_server(process, grace_s=20.0)


@pytest.fixture(scope="module")
def prometheus(server, prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory):
    """Prometheus with deploy/prometheus/prometheus.yml pointed at the server; yields its base URL."""
    folder = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(DEPLOY / "prometheus" / path) for path in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["servescope"]["static_configs"][0]["targets"] = [f"127.0.0.1:{server['metrics_port']}"]
    jobs["prometheus"]["static_configs"][0]["targets"] = [f"127.0.0.1:{port}"]
    config_path = folder / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [prometheus_binary, f"--config.file={config_path}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 30, "Prometheus")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def api(url: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def instant(url: str, expr: str) -> list[dict[str, Any]]:
    data = api(url, "query", query=expr)
    return data["result"]


def infer_request(
    model: str, batch: int, rng: np.random.Generator, *, max_token: int
) -> pb.ModelInferRequest:
    tokens = rng.integers(0, max_token + 1, size=(batch, 100), dtype=np.int32)
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="tokens", datatype="INT32", shape=[batch, 100])],
        raw_input_contents=[tokens.astype("<i4").tobytes()],
    )


def run_load(grpc_port: int, duration_s: float) -> Counter:
    """Closed-loop load from 3 threads (one per model): batch 1 and 4, one in 10 requests invalid."""
    codes: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def worker(index: int, model: str) -> None:
        rng = np.random.default_rng(index)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            sent = 0
            while time.monotonic() < deadline:
                max_token = 20000 if sent % 10 == 9 else 9999  # out of range: INVALID_ARGUMENT
                request = infer_request(model, 4 if sent % 3 == 0 else 1, rng, max_token=max_token)
                try:
                    stub.ModelInfer(request, timeout=5)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                sent += 1
                with lock:
                    codes[(model, code)] += 1

    threads = [threading.Thread(target=worker, args=(i, model)) for i, model in enumerate(MODELS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


@pytest.fixture(scope="module")
def loaded(server, prometheus) -> dict[str, Any]:
    """Send the load, then wait until Prometheus has scraped it and evaluated the rules on it."""
    wait_for(lambda: instant(prometheus, 'up{job="servescope"} == 1'), 15, "the first scrape")
    codes = run_load(server["grpc_port"], LOAD_DURATION_S)

    def rules_caught_up() -> bool:
        rates = instant(prometheus, "model:servescope_requests:rate1m > 0")
        errors = instant(prometheus, 'model_code:servescope_requests:rate1m{code="INVALID_ARGUMENT"} > 0')
        return len(rates) == len(MODELS) and len(errors) == len(MODELS)

    wait_for(rules_caught_up, 20, "the recording rules to see the load")
    return {"codes": codes}


def value(url: str, record: str, model: str) -> float:
    """The current value of a per-model recorded series."""
    (series,) = instant(url, f'{record}{{model="{model}"}}')
    return float(series["value"][1])


def recording_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers and strings."""
    stripped = re.sub(r'"[^"]*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}", "", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    identifiers = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped))
    return {name for name in identifiers if name.startswith(("servescope_", "process_")) or ":" in name}


def test_every_series_used_by_the_dashboard_and_the_rules_has_data(loaded, prometheus) -> None:
    used = set()
    for rule in recording_rules():
        used |= metric_names(rule["expr"])
        if "record" in rule:
            used.add(rule["record"])
    for _title, expr in dashboard_targets():
        used |= metric_names(expr)
    assert "servescope_request_duration_seconds_bucket" in used and "model:servescope_requests:rate1m" in used
    empty = sorted(name for name in used if not instant(prometheus, f'count({{__name__="{name}"}})'))
    assert [name for name in empty if not GPU_METRIC.search(name)] == []


def test_every_dashboard_query_parses_and_returns_a_result(loaded, prometheus) -> None:
    targets = dashboard_targets()
    assert len(targets) >= 15
    empty = []
    for title, expr in targets:
        query = expr.replace("$model", "sentiment_fp32").replace("$__rate_interval", RATE_INTERVAL)
        assert "$" not in query, f"unsubstituted variable in panel {title!r}: {expr}"
        if not instant(prometheus, query):
            empty.append((title, query))
    # Only GPU panels may be empty (no GPU here: the server exports no servescope_gpu_* series).
    assert [(title, q) for title, q in empty if not GPU_METRIC.search(q)] == []
    # The $model variable lists exactly the served models.
    values = api(prometheus, "label/model/values", **{"match[]": "servescope_model_info"})
    assert sorted(values) == sorted(MODELS)


def test_rule_groups_evaluate_without_errors(loaded, prometheus) -> None:
    groups = api(prometheus, "rules")["groups"]
    files = {Path(group["file"]).name for group in groups}
    assert files == {path.name for path in RULE_FILES}
    rules = [rule for group in groups for rule in group["rules"]]
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []
    alerts = {rule["name"]: rule["state"] for rule in rules if rule["type"] == "alerting"}
    assert alerts["ServescopeDown"] == "inactive"


def test_recorded_values_agree_with_the_load_that_was_sent(loaded, prometheus) -> None:
    codes = loaded["codes"]
    for model in MODELS:
        assert codes[(model, "OK")] > 10 and codes[(model, "INVALID_ARGUMENT")] >= 1
        assert value(prometheus, "model:servescope_requests:rate1m", model) > 0
        ratio = value(prometheus, "model:servescope_request_errors:ratio_rate1m", model)
        # One request in ten is invalid: the ratio sits near 0.1 (the 1m window may cut the edges).
        assert 0.03 < ratio < 0.25, ratio
        assert 1.0 <= value(prometheus, "model:servescope_batch_size:mean_1m", model) <= 64.0
        assert 0.0001 <= value(prometheus, "model:servescope_request_duration_seconds:p99_1m", model) <= 10.0
        assert 0.0 <= value(prometheus, "model:servescope_queue_time:share_1m", model) <= 1.0
    rejected = instant(prometheus, 'model_reason:servescope_requests_rejected:rate1m{reason="invalid"} > 0')
    assert {series["metric"]["model"] for series in rejected} == set(MODELS)


def test_scraped_counters_equal_what_the_client_counted(loaded, prometheus) -> None:
    """The raw counters the analysis reads (increase() over a step) reach Prometheus exactly."""
    sent = {(model, code): count for (model, code), count in loaded["codes"].items()}

    def scraped() -> dict[tuple[str, str], int]:
        rows = instant(prometheus, "sum by (model, code) (servescope_requests_total)")
        return {(r["metric"]["model"], r["metric"]["code"]): int(float(r["value"][1])) for r in rows}

    # The load ended before the fixture returned; wait for a scrape taken after the last answer.
    wait_for(lambda: scraped() == sent, 10, f"scraped counters to equal the client's {sent}")


def test_container_health_check_script_reports_serving(server) -> None:
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py"), f"127.0.0.1:{server['grpc_port']}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"healthy: 127.0.0.1:{server['grpc_port']}: SERVING"
    unreachable = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py"), f"127.0.0.1:{free_port()}", "--timeout-s", "1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert unreachable.returncode == 1
    assert "unhealthy" in unreachable.stderr and "UNAVAILABLE" in unreachable.stderr
