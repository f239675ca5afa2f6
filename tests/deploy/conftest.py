"""Fixtures for the deployment tests: paths, the Prometheus binaries, a small kustomize renderer."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
ENSURE_PROMETHEUS = DEPLOY / "prometheus" / "ensure-prometheus.sh"


def _require_binary(name: str) -> str:
    """Path of a Prometheus binary, installing the Debian package through the project's script first.

    In CI (CI set) a missing binary fails the test; elsewhere (a developer without root) it skips.
    """
    found = shutil.which(name)
    if found:
        return found
    done = subprocess.run(["bash", str(ENSURE_PROMETHEUS)], capture_output=True, text=True, check=False)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not installed and {ENSURE_PROMETHEUS.name} could not install it: {done.stderr.strip()}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    return _require_binary("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return _require_binary("prometheus")
