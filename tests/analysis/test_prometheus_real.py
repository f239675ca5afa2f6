"""--prometheus-url against a real Prometheus (the Debian binary) that scraped a real server while a
real campaign measured it: the server-side figures from PromQL agree with the campaign's own scrapes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from analysis import analyze
from analysis.reader import load_campaign
from loadtest.procs import child_env, free_port
from loadtest.server_proc import serve_command, spawn_ready, stop_server

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def server(model_repository: Path, tmp_path: Path):
    ready_file = tmp_path / "ready.json"
    command = [
        *serve_command(), "serve", "--model-repository", str(model_repository),
        "--model", "sentiment_fp32", "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0",
        "--http-port", "0", "--device", "cpu", "--max-queue-delay-us", "1000", "--grace-period-s", "5",
        "--ready-file", str(ready_file),
    ]  # fmt: skip
    process, ready, _log = spawn_ready(command, ready_file, tmp_path / "server.log", 120.0)
    try:
        yield ready
    finally:
        stop_server(process)


@pytest.fixture
def prometheus(server, tmp_path: Path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = f"127.0.0.1:{server['metrics_port']}"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: servescope, static_configs: [{{targets: ['{target}']}}]}}\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 30, "Prometheus")
        query = f"{url}/api/v1/query?query=up%7Bjob%3D%22servescope%22%7D%3D%3D1"
        wait_for(
            lambda: json.load(urllib.request.urlopen(query, timeout=2))["data"]["result"], 30, "a scrape"
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_prometheus_figures_agree_with_the_campaign_scrapes(server, prometheus, tmp_path):
    spec = tmp_path / "campaign.yaml"
    spec.write_text(
        "name: prometheus\nmodels: [sentiment_fp32]\nload: {concurrency: [8]}\n"
        "step: {warmup_s: 1, duration_s: 6, max_duration_s: 6, stability_percent: 50}\n"
    )
    output = tmp_path / "campaign"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "campaign", str(spec), "--output", str(output),
         "--target", f"127.0.0.1:{server['grpc_port']}",
         "--metrics-url", f"http://127.0.0.1:{server['metrics_port']}/metrics"],
        cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    time.sleep(2.5)  # let Prometheus scrape past the end of the step

    own = analyze(load_campaign(output))
    pulled = analyze(load_campaign(output), prometheus_url=prometheus)
    assert any("1 of 1 steps from Prometheus" in note for note in pulled.notes)
    mine, theirs = own.steps[0], pulled.steps[0]
    # increase() extrapolates to the window's edges from 1 s scrapes: counts agree to about a scrape;
    # means (sum / count) do not depend on the edges and agree closely.
    assert theirs.decomposition.compute_s == pytest.approx(mine.decomposition.compute_s, rel=0.25)
    queue_own = mine.decomposition.queueing_s + mine.decomposition.batching_delay_s
    queue_prom = theirs.decomposition.queueing_s + theirs.decomposition.batching_delay_s
    assert queue_prom == pytest.approx(queue_own, rel=0.3, abs=2e-4)
    assert theirs.batch_size_mean == pytest.approx(mine.batch_size_mean, rel=0.25)
    step = load_campaign(output).steps[0]
    from analysis.prometheus import PrometheusClient, fetch_server_deltas

    deltas = fetch_server_deltas(PrometheusClient(prometheus), step)
    assert deltas is not None and deltas.source == "prometheus"
    assert deltas.requests == pytest.approx(step.server.requests, rel=0.3)
    assert deltas.requests_by_code.get("OK", 0) == pytest.approx(step.server.requests_by_code["OK"], rel=0.3)
    print(
        f"requests {deltas.requests:.0f} vs {step.server.requests:.0f}; compute "
        f"{theirs.decomposition.compute_s * 1e3:.3f} vs {mine.decomposition.compute_s * 1e3:.3f} ms; queue "
        f"{queue_prom * 1e3:.3f} vs {queue_own * 1e3:.3f} ms; batch {theirs.batch_size_mean:.2f} vs "
        f"{mine.batch_size_mean:.2f}"
    )
