"""Planted bottlenecks: real short campaigns on real servers, each built so that one known thing limits
it, and the verdict (kind and the key number of its recommendation) the analysis draws.

Models other than the exported LSTM are built here with onnx: a tiny one (a 4x4 MatMul: nothing to
compute, so the front end is all the work) and a heavy MLP (256 -> 4096 -> 4096 -> 4096 -> 1, about 69
MFLOP per sample: compute is all the work). The queueing, batching-delay and healthy cases are the real
campaigns of test_real_campaigns.py.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from analysis import analyze_campaign
from loadtest.procs import child_env
from loadtest.server_proc import serve_command, spawn_ready, stop_server

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
STEP = "step: {warmup_s: 0.5, duration_s: 1.5, max_duration_s: 1.5, stability_percent: 50}"
HOGS_S = 30.0  # the busy loops' longest run: a starved step takes 5-10 s from its warm-up here
CONFIG = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 64
input {{ name: "x" data_type: TYPE_FP32 dims: [ {inputs} ] }}
output {{ name: "y" data_type: TYPE_FP32 dims: [ {outputs} ] }}
dynamic_batching {{ max_queue_delay_microseconds: 1000 }}
instance_group {{ count: 1 kind: KIND_CPU }}
"""


def mlp(repository: Path, name: str, dims: list[int]) -> None:
    """An ONNX MLP (MatMul + Relu layers) with a Triton-style repository entry, no metadata.json."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, previous = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        weight = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{i}"))
        last = i == len(dims) - 2
        product = "y" if last else f"mm{i}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [product]))
        if not last:
            nodes.append(helper.make_node("Relu", [product], [f"h{i}"]))
            previous = f"h{i}"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dims[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", dims[-1]])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (repository / name / "1").mkdir(parents=True)
    onnx.save(model, str(repository / name / "1" / "model.onnx"))
    (repository / name / "config.pbtxt").write_text(
        CONFIG.format(name=name, inputs=dims[0], outputs=dims[-1])
    )


@pytest.fixture(scope="module")
def planted_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("planted") / "models"
    mlp(repository, "tiny", [4, 4])
    mlp(repository, "heavy", [256, 4096, 4096, 4096, 1])
    return repository


def env() -> dict[str, str]:
    return child_env()


def campaign(folder: Path, name: str, body: str, *args: str, pin: str | None = None, nice: int = 0) -> Path:
    spec = folder / f"{name}.yaml"
    spec.write_text(f"name: {name}\n{body}\n{STEP}\n")
    output = folder / f"{name}-campaign"
    command = [sys.executable, "-m", "cli", "campaign", str(spec), "--output", str(output), *args]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    if pin is not None:
        command = ["taskset", "-c", pin, *command]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def verdict_of(folder: Path, campaign_dir: Path, series: str | None = None) -> dict:
    analyze_campaign(campaign_dir, folder / f"{campaign_dir.name}-analysis")
    data = json.loads((folder / f"{campaign_dir.name}-analysis" / "summary.json").read_text())
    verdicts = [v for v in data["verdicts"] if series is None or series in v["series"]]
    assert len(verdicts) == 1, [v["series"] for v in data["verdicts"]]
    return verdicts[0]


def test_a_tiny_model_at_32_users_is_front_end_bound(tmp_path: Path, planted_repository: Path, kit) -> None:
    """Nothing to compute: the event loop is the work. The verdict names it, never the network (on
    loopback), and its client-batching advice holds: the same campaign's 8-sample series gets most of
    the inferences/s it predicts."""
    output = campaign(
        tmp_path, "front-end",
        "models: [tiny]\nclient_batch_sizes: [1, 8]\nload: {concurrency: [32]}\n"
        "server: [{batching: true, max_queue_delay_us: 500, workers: 1}]",
        "--model-repository", str(planted_repository),
    )  # fmt: skip
    verdict = verdict_of(tmp_path, output, "client batch 1,")
    if kit.contended(output):
        assert verdict["kind"] in {"machine-contended", "generator-starved"}, verdict
        return
    if verdict["kind"] == "healthy":
        # The plant did not take on this run: 32 users did not saturate the event loop within the
        # objective, and then healthy, not the front end, is the honest verdict (seen in 2 of 6 full runs).
        assert verdict["evidence"]["error_ratio"] == 0.0, verdict
        pytest.skip(
            f"the tiny model's load did not saturate the front end on this run: {verdict['reasons'][0]}"
        )
    assert verdict["kind"] == "front-end-bound", verdict
    assert verdict["evidence"]["loop_demand"] >= 0.85
    assert verdict["evidence"]["compute_busy"] < 0.85
    batching = next(
        r for r in verdict["recommendations"] if (r["change"] or {}).get("setting") == "client_batch_size"
    )
    assert batching["change"]["value"] == 8
    predicted = batching["prediction"]["expected"]
    steps = [json.loads(line) for line in (output / "steps.jsonl").read_text().splitlines()]
    measured = next(s for s in steps if s["client_batch_size"] == 8)["inferences_per_s"]
    assert measured >= 0.5 * min(predicted, 8 * steps[0]["requests_per_s"]), (measured, predicted)


def test_a_heavy_model_is_compute_bound(tmp_path: Path, planted_repository: Path, kit) -> None:
    output = campaign(
        tmp_path, "compute",
        # Three times the batch limit in samples outstanding: the queue always holds the next batch, so the
        # compute slot never waits for requests to come back from the clients. Four samples a request keep
        # the event loop's work per batch (decode, answer) small beside the batch's compute.
        "models: [heavy]\nclient_batch_sizes: [4]\nload: {concurrency: [12]}\n"
        "server: [{batching: true, max_batch_size: 16, max_queue_delay_us: 1000, workers: 1}]\n"
        "objective: {percentile: p99, latency_ms: 2000}",
        "--model-repository", str(planted_repository),
    )  # fmt: skip
    # No metadata.json: the campaign counted FLOPs and weights from the ONNX graph, so there is a floor.
    facts = json.loads((output / "campaign.json").read_text())["models"]["heavy"]
    assert facts["flops_per_sample"] == 2 * (256 * 4096 + 4096 * 4096 * 2 + 4096)
    assert facts["weight_bytes"] == 4 * (256 * 4096 + 4096 * 4096 * 2 + 4096)
    verdict = verdict_of(tmp_path, output)
    summary = json.loads((tmp_path / f"{output.name}-analysis" / "summary.json").read_text())
    assert [f["model"] for f in summary["floor"]] == ["heavy"]
    if kit.contended(output) and verdict["kind"] != "compute-bound-cpu":
        # Other processes took CPU: the honest verdict may then be the machine's (never the front end's).
        assert verdict["kind"] in {"machine-contended", "generator-starved"}, verdict
        return
    assert verdict["kind"] == "compute-bound-cpu", json.dumps(verdict["evidence"])
    assert verdict["evidence"]["compute_busy"] >= 0.85
    assert "compute slot (instances x workers) were busy" in verdict["reasons"][0]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores: one for the server")
def test_a_generator_sharing_its_core_with_hogs_is_starved_not_the_server(
    tmp_path: Path, model_repository: Path, serve_process
) -> None:
    """The server alone on core 1; the load generator on core 0, at the lowest priority, with three busy
    loops of normal priority: the generator waits for its CPU, its latencies include that, and the
    verdict says so instead of blaming the server. (At equal priority the scheduler favours the
    generator, which mostly sleeps waiting for answers, and the busy loops barely slow it down.)"""
    server = serve_process(model_repository, "sentiment_fp32", pin="1")
    spec = tmp_path / "starved.yaml"
    spec.write_text(f"name: starved\nmodels: [sentiment_fp32]\nload: {{concurrency: [8]}}\n{STEP}\n")
    output = tmp_path / "starved-campaign"
    command = [
        "taskset", "-c", "0", "nice", "-n", "19", sys.executable, "-m", "cli", "campaign", str(spec),
        "--output", str(output), "--target", server["target"], "--metrics-url", server["metrics_url"],
    ]  # fmt: skip
    driver = subprocess.Popen(command, cwd=REPO_ROOT, env=env(), stdout=subprocess.PIPE, text=True)
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        assert driver.stdout is not None
        # The hogs run from the warm-up to the last window: start-up and Locust's reports are not slowed.
        # They also stop on the wall clock, HOGS_S after they start: the starved driver may not get to
        # print "window 3" while they run (a full test run once waited on it until the 600 s timeout).
        timer, by_clock = None, threading.Event()
        for line in driver.stdout:
            if "warming up" in line and not hogs:
                hogs = [
                    subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
                    for _ in range(3)
                ]
                timer = threading.Timer(HOGS_S, _kill_all, args=(list(hogs), by_clock))
                timer.start()
            if "window 3:" in line:
                for hog in hogs:
                    hog.kill()
        if timer is not None:
            timer.cancel()
        assert driver.wait(timeout=120) == 0
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        if driver.poll() is None:
            driver.kill()
    verdict = verdict_of(tmp_path, output)
    if by_clock.is_set():
        # The generator got so little CPU that its step outlasted the busy loops: part of what it measured
        # ran without them. Whatever the verdict, it must not blame the server.
        assert verdict["kind"] in {"generator-starved", "machine-contended", "healthy"}, verdict
        pytest.skip(f"the busy loops were stopped by the clock after {HOGS_S:g} s: the plant overshot")
    assert verdict["kind"] == "generator-starved", json.dumps(verdict["evidence"])
    assert verdict["evidence"]["generator_wait_share"] >= 0.5
    assert verdict["recommendations"][0]["text"].startswith("give the load generator cores of its own")


def _kill_all(processes: list[subprocess.Popen[bytes]], done: threading.Event) -> None:
    done.set()
    for process in processes:
        process.kill()


@pytest.fixture
def serve_process(tmp_path: Path):
    """`servescope serve` pinned to some cores, on free ports; stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(repository: Path, model: str, pin: str) -> dict[str, str]:
        ready = tmp_path / f"ready-{len(started)}.json"
        command = [
            "taskset", "-c", pin, *serve_command(), "serve", "--model-repository", str(repository),
            "--model", model, "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0", "--workers",
            "1", "--ready-file", str(ready),
        ]  # fmt: skip
        process, ports, _log = spawn_ready(command, ready, ready.with_suffix(".log"), 120.0)
        started.append(process)
        return {
            "target": f"127.0.0.1:{ports['grpc_port']}",
            "metrics_url": f"http://127.0.0.1:{ports['metrics_port']}/metrics",
        }

    yield start
    for process in started:
        stop_server(process, grace_s=30.0)


def test_the_models_built_here_load(planted_repository: Path) -> None:
    import onnxruntime as ort

    for name, width in (("tiny", 4), ("heavy", 256)):
        session = ort.InferenceSession(str(planted_repository / name / "1" / "model.onnx"))
        (y,) = session.run(None, {"x": np.ones((2, width), np.float32)})
        assert y.shape[0] == 2 and np.isfinite(y).all()
    assert shutil.which("taskset")
