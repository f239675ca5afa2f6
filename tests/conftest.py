"""Shared fixtures for every test area.

`model_repository`: a real model repository with sentiment_fp32, sentiment_int8 and sentiment_fp16,
written once per session by the real `servescope export` on a small synthetic set (1 epoch, 8000
reviews: about 20 s on 2 cores; held-out accuracy about 0.89). It runs the command
line in a child process: the same code path as a user's export, and TensorFlow never loads into the test
process (where Locust's gevent patching or gRPC servers may live).

Set SERVESCOPE_TEST_REPOSITORY to an existing repository to skip the export, for example one built with
    servescope export --epochs 1 --train-samples 8000 --test-samples 500
        --output /tmp/sstest-repo
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.procs import child_env

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_EXPORT_ARGS = (
    "--dataset", "synthetic", "--epochs", "1", "--train-samples", "8000", "--test-samples", "500",
    "--seed", "0",
)  # fmt: skip


def run_export(output: Path, *extra: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """`servescope export ... --output OUTPUT` in a child process; returns it finished (any exit code)."""
    env = child_env()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run(
        [sys.executable, "-m", "cli", "export", *extra, "--output", str(output)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a model repository holding sentiment_fp32, sentiment_int8 and sentiment_fp16."""
    preset = os.environ.get("SERVESCOPE_TEST_REPOSITORY")
    if preset:
        path = Path(preset)
        if not path.is_dir():
            pytest.fail(f"SERVESCOPE_TEST_REPOSITORY={preset}: no such folder")
        return path
    output = tmp_path_factory.mktemp("model-repository") / "models"
    done = run_export(output, *FIXTURE_EXPORT_ARGS)
    if done.returncode != 0:
        pytest.fail(f"servescope export failed with exit code {done.returncode}:\n{done.stderr[-4000:]}")
    return output
