"""A campaign against a real Triton Inference Server on this machine (the peer benchmark's PyTriton,
docs/peers.md): its records carry the Triton process tree's CPU, and a 1-user step with a generous
objective is not called compute-bound. Skipped where the peer's environment was never built."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest

from analysis import analyze
from analysis.reader import load_campaign
from loadtest.campaign import run_campaign
from loadtest.campaign_config import parse_campaign_config
from servescope import results

pytestmark = pytest.mark.slow

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"
SETTINGS = {"max_batch_size": 64, "max_queue_delay_us": 0, "instances": 1}


def _peer_module(name: str) -> ModuleType:
    sys.path.insert(0, str(PEERS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(PEERS))


@pytest.fixture
def triton(model_repository: Path) -> Iterator[Any]:
    venvs, servers = _peer_module("venvs"), _peer_module("servers")
    if not venvs.is_current("triton"):
        pytest.skip(
            "the Triton peer environment is not built (benchmarks/peers/.venvs/triton): build it with "
            "`.venv/bin/python benchmarks/peers/run.py --servers triton --quick` (docs/peers.md)"
        )
    # PyTriton's IPC socket paths must stay under 108 characters: a short folder, not pytest's tmp_path.
    workdir = Path(tempfile.mkdtemp(prefix="ss-triton-"))
    try:
        server = servers.start("triton", SETTINGS, model_repository, "sentiment_fp32", workdir)
        try:
            yield server
        finally:
            servers.stop(server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_triton_campaign_records_its_process_tree_and_is_not_compute_bound(
    triton: Any, model_repository: Path, tmp_path: Path
) -> None:
    leader = psutil.Process(triton.process.pid)  # triton/serve.py: PyTriton, which runs the model
    tree = [leader.pid, *(p.pid for p in leader.children(recursive=True))]
    names = {psutil.Process(pid).name() for pid in tree}
    assert "tritonserver" in names, names
    config = parse_campaign_config(
        {
            "name": "triton-1-user",
            "models": ["sentiment_fp32"],
            "load": {"concurrency": [1], "workers": 0, "probe_requests": 0},
            "step": {"warmup_s": 1, "duration_s": 3, "max_duration_s": 3, "stability_percent": 15},
            "objective": {"percentile": "p99", "latency_ms": 200},
        }
    )
    output = tmp_path / "campaign"
    target, metrics_url = triton.grpc_target, triton.metrics_url
    run_campaign(config, output, model_repository=model_repository, target=target, metrics_url=metrics_url,
                 progress=lambda line: None)  # fmt: skip
    (step,), _ = results.read_steps(output)
    cpu = step.cpu
    assert step.completed > 0 and step.server is not None and step.server.source == "triton"
    assert cpu.server_process == "found" and cpu.server_pids is not None
    assert cpu.server_pids[0] == triton.process.pid and set(tree) <= set(cpu.server_pids)
    assert cpu.server_cores is not None and cpu.server_cores > 0.05
    assert cpu.server_busiest_thread_cores is not None and cpu.server_loop_wait_share is not None
    data = json.loads(json.dumps(analyze(load_campaign(output)).to_json()))
    (verdict,) = data["verdicts"]
    assert verdict["kind"] not in {"compute-bound-cpu", "compute-bound-gpu"}, verdict
    assert "host CPU not recorded" not in " ".join(verdict["reasons"])
