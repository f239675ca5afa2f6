"""`servescope demo` on a tiny configuration: the same code path as `make demo`, smaller numbers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtest.procs import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = ("--step-duration-s", "1", "--warmup-s", "0.5", "--concurrency", "8")


def _env() -> dict[str, str]:
    env = child_env()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _demo(tmp_path: Path, models: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli",
        "demo",
        "--model-repository",
        str(models),
        "--output",
        str(tmp_path / "runs"),
        *TINY,
        *extra,
    ]


def _children_left(marker: str) -> list[str]:
    """Processes still running whose command line mentions `marker` (the test's temp folder)."""
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.pid != os.getpid():
            left.append(cmdline)
    return left


@pytest.mark.slow
def test_demo_exports_serves_loads_and_analyzes(tmp_path: Path) -> None:
    models = tmp_path / "models"
    done = subprocess.run(
        _demo(tmp_path, models, "--epochs", "1", "--train-samples", "1000", "--test-samples", "300"),
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "SYNTHETIC corpus" in out
    assert "--dataset imdb" in out  # says how to use the real data
    assert "[2/4] Load campaign" in out and "[3/4] Analysis" in out and "[4/4] Verifying" in out
    assert "Verified: sentiment_fp32: --max-batch-size" in out and "against the prediction" in out
    assert "verdict:" in out
    for precision in ("fp32", "int8", "fp16"):
        assert (models / f"sentiment_{precision}" / "1" / "model.onnx").is_file()
    (run_dir,) = (tmp_path / "runs").iterdir()
    steps = (run_dir / "campaign" / "steps.jsonl").read_text().splitlines()
    # 3 precisions x (batching off, on with 1 worker, on with 2 workers) x 1 concurrency level
    assert len(steps) == 9
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    labels = {row["series"] for row in summary["steps"]}
    assert any("1 worker," in label for label in labels) and any("2 workers" in label for label in labels)
    assert summary["verdicts"], summary
    html = (run_dir / "report" / "report.html").read_text()
    assert str(run_dir / "report" / "report.html") in out
    assert "<svg" in html and "http://" not in html.split("<svg", 1)[0]
    assert _children_left(str(tmp_path)) == []


@pytest.mark.slow
def test_demo_reuses_models_and_stops_cleanly_on_ctrl_c(tmp_path: Path, model_repository: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(model_repository, models)
    proc = subprocess.Popen(
        _demo(tmp_path, models),
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        seen.append(line)
        if "window 1" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert "reusing the exported models" in output
    assert proc.returncode == 130, output[-3000:]
    assert "Interrupted:" in output and "kept in" in output
    assert "Traceback" not in output
    time.sleep(1)
    assert _children_left(str(tmp_path)) == []


def test_demo_failure_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "models"
    blocker.write_text("not a folder")
    done = subprocess.run(
        _demo(tmp_path, blocker), cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (1, 2)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("servescope demo: error:") and str(blocker) in last
    assert "Traceback" not in done.stderr
