"""benchmarks/gpu: the dry run of the GPU script on the CPU (the same files a GPU run writes), its
usage errors, the budget, and the wheel parts that carry onnxruntime-gpu to the GPU machine."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu import driver, parts, report
from benchmarks.gpu.budget import Budget
from benchmarks.gpu.inprocess import CUDA_GRAPH_SKIP_CPU, InProcessResult, Point
from benchmarks.gpu.served import NO_GPU_GAUGES, ServedResult, ServedStep

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_SH = REPO_ROOT / "benchmarks" / "gpu" / "run.sh"
DRY_BUDGET_S = 70.0


@pytest.mark.slow
def test_dry_run_on_cpu_writes_every_result(model_repository: Path, tmp_path: Path) -> None:
    output = tmp_path / "gpu-dry"
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        SERVESCOPE_GPU_STORE=str(tmp_path / "store"),
        SERVESCOPE_GPU_SITE=str(tmp_path / "site"),
    )
    done = subprocess.run(
        [
            "bash",
            str(RUN_SH),
            "--device",
            "cpu",
            "--quick",
            "--budget-s",
            str(DRY_BUDGET_S),
            "--model-repository",
            str(model_repository),
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DRY_BUDGET_S + 60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert CUDA_GRAPH_SKIP_CPU in done.stdout

    run = json.loads((output / "run.json").read_text())
    assert run["environment"]["device"] == "cpu"
    assert "CPUExecutionProvider" in run["environment"]["available_providers"]
    assert run["wall_s"] < DRY_BUDGET_S

    in_process = json.loads((output / "in_process.json").read_text())
    models = {p["model"] for p in in_process["placements"]}
    assert {"sentiment_fp32", "sentiment_int8", "sentiment_fp16"} <= models
    for placement in in_process["placements"]:
        assert placement["providers"] == ["CPUExecutionProvider"], placement
        assert placement["nodes_by_provider"]["CPUExecutionProvider"] > 0
        assert placement["warning"] is None
    int8 = next(p for p in in_process["placements"] if p["model"] == "sentiment_int8")
    assert "DynamicQuantizeLSTM" in int8["cpu_ops"]
    measured = {(p["model"], p["mode"], p["batch_size"]) for p in in_process["points"]}
    expected = {
        (m, mode, b) for m in models for mode in ("plain", "io_binding") for b in driver.QUICK_BATCH_SIZES
    }
    assert measured == expected, in_process["skipped"]
    assert all(p["inferences_per_s"] > 0 and p["runs"] >= 5 for p in in_process["points"])
    assert CUDA_GRAPH_SKIP_CPU in in_process["skipped"]

    served = json.loads((output / "served.json").read_text())
    assert served["model"] == "sentiment_fp32"
    assert served["gpu_gauges"] == NO_GPU_GAUGES
    assert set(served["provider"].values()) == {"CPUExecutionProvider"}
    steps = {(s["batching"], s["workers"], s["concurrency"]): s for s in served["steps"]}
    assert set(steps) == {(True, 1, 1), (True, 1, 8), (True, 2, 8), (False, 2, 8)}, served["skipped"]
    for step in steps.values():
        assert step["throughput_rps"] > 0 and step["completed"] > 0 and step["errors"] == {}
        assert step["gpu_utilization_ratio"] is None
        assert 0 < step["p50_s"] <= step["p99_s"]
    assert steps[(False, 2, 8)]["server_mean_batch_size"] == 1.0

    campaign = json.loads((output / "campaign.json").read_text())
    markdown = (output / "report.md").read_text()
    if importlib.util.find_spec("locust") is None:
        assert campaign["ran"] is False and "locust is not installed" in campaign["reason"]
    else:
        assert campaign["ran"] is True, campaign["reason"]
        assert campaign["steps"] == 1 and len(campaign["verdicts"]) == 1
        assert campaign["verdicts"][0]["model"] == "sentiment_fp32"
        assert (output / "analysis" / "report.md").is_file()
        assert f"**{campaign['verdicts'][0]['kind']}**" in markdown
    assert CUDA_GRAPH_SKIP_CPU in markdown
    assert "| on | 2 | 8 |" in markdown and "| off | 2 | 8 |" in markdown


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "tpu", "--output", "x"], "argument --device: invalid choice: 'tpu'"),
        (
            ["--device", "cpu", "--output", "x", "--model-repository", "/nonexistent"],
            "--model-repository '/nonexistent': no such folder",
        ),
        (
            ["--device", "cpu", "--output", "x", "--model-repository", "{empty}"],
            "no model (no */config.pbtxt",
        ),
        (
            ["--device", "cpu", "--output", "x", "--budget-s", "0", "--model-repository", "{empty}"],
            "--budget-s 0.0: must be > 0",
        ),
        (["--device", "cpu", "--output", "x", "--workers", "1"], "--workers 1: the multi-worker server"),
    ],
)
def test_bad_input_is_one_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    argv = [str(tmp_path) if a == "{empty}" else a for a in argv]
    assert driver.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpu driver: error: ") and message in err, err


def test_budget_sections_end_at_the_run_deadline() -> None:
    now = [100.0]
    budget = Budget(10.0, clock=lambda: now[0])
    first = budget.section("a", 4.0)
    now[0] += 3.0
    assert first.left_s() == pytest.approx(1.0) and not first.expired()
    now[0] += 2.0
    assert first.expired()
    second = budget.section("b", 60.0)  # asks for more than is left: gets the 5 s that remain
    assert second.budget_s == pytest.approx(5.0)
    with pytest.raises(ValueError, match="total_s must be > 0, got 0"):
        Budget(0)


def _step(batching: bool, workers: int, concurrency: int, rps: float) -> ServedStep:
    return ServedStep(
        batching, workers, concurrency, 8, 100, {}, rps, 0.001, 0.002, 1.0, 1.0, None, None, None
    )


def test_ratios_against_the_served_models_ceiling() -> None:
    in_process = InProcessResult(
        "cpu",
        [1, 8],
        points=[Point("m", "plain", 8, 10, 0.001, 8000.0), Point("other", "plain", 8, 10, 0.0001, 80000.0)],
    )
    served = ServedResult(
        "cpu",
        "m",
        1.0,
        0.5,
        steps=[
            _step(True, 2, 1, 500.0),
            _step(True, 2, 64, 4000.0),
            _step(False, 2, 64, 800.0),
            _step(False, 2, 1, 400.0),
        ],
    )
    assert report.ratios(in_process, served) == {
        "served_best_vs_in_process_best": pytest.approx(0.5),
        "batching_on_vs_off_c64": pytest.approx(5.0),
    }


def test_parts_split_receive_join(tmp_path: Path) -> None:
    payload = os.urandom(10_000)
    wheel = tmp_path / "onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(payload)
    manifest = parts.split(wheel, tmp_path / "all", 4096)
    assert [p["size"] for p in manifest["parts"]] == [4096, 4096, 1808]
    assert manifest["sha256"] == hashlib.sha256(payload).hexdigest()
    store = tmp_path / "store"
    # The first run carries the manifest and part 0 only: two are missing, joining refuses.
    first = tmp_path / "run1"
    first.mkdir()
    for name in ("manifest.json", manifest["parts"][0]["file"]):
        (first / name).write_bytes((tmp_path / "all" / name).read_bytes())
    assert parts.receive(first, store) == [p["file"] for p in manifest["parts"][1:]]
    with pytest.raises(parts.PartsError, match="2 of 3 parts missing"):
        parts.join(store, tmp_path / "out")
    # A corrupt part is refused by name.
    second = tmp_path / "run2"
    second.mkdir()
    (second / "manifest.json").write_bytes((tmp_path / "all" / "manifest.json").read_bytes())
    (second / manifest["parts"][1]["file"]).write_bytes(b"x" * 4096)
    with pytest.raises(parts.PartsError, match=r"part01: sha256 differs"):
        parts.receive(second, store)
    # The next run brings the other two; the joined file is the original.
    for part in manifest["parts"][1:]:
        (second / part["file"]).write_bytes((tmp_path / "all" / part["file"]).read_bytes())
    assert parts.receive(second, store) == []
    assert parts.join(store, tmp_path / "out").read_bytes() == payload
