"""Fixtures for the server tests: a real servescope server on 127.0.0.1, port 0, in a background thread.

The server runs on its own asyncio loop in a thread, so tests can use blocking clients (tritonclient,
urllib) from the test thread exactly as an outside client would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.procs import child_env
from loadtest.server_proc import ServerStartError, serve_command, wait_ready
from server.app import Server, ServerOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "sentiment_fp32"

T = TypeVar("T")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests with asyncio.run (pytest-asyncio is not a dependency)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**arguments), 60))
    return True


class RunningServer:
    """A started Server and the loop thread it lives on."""

    def __init__(self, options: ServerOptions) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-server-loop", daemon=True)
        self._thread.start()
        self.server = Server(options)
        self.grpc_port, self.metrics_port = self.call(self.server.start(), timeout_s=120)
        self.http_port = self.server.http_port
        self.target = f"127.0.0.1:{self.grpc_port}"
        self.http_target = f"127.0.0.1:{self.http_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def http_get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.metrics_url + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample value from /metrics, parsed with prometheus_client's parser; None when absent."""
        status, text = self.http_get("/metrics")
        assert status == 200
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return None

    def wait_for_metric(self, value: float, name: str, timeout_s: float = 10, **labels: str) -> float | None:
        """Poll /metrics until the sample equals value (or the timeout passes); returns the last value."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.metric(name, **labels)
            if found == value or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def close(self, grace_s: float = 5) -> None:
        try:
            self.call(self.server.stop(grace_s), timeout_s=grace_s + 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def server_options(repository: Path, **overrides: Any) -> ServerOptions:
    base = ServerOptions(
        model_repository=repository,
        host="127.0.0.1",
        grpc_port=0,
        http_port=0,
        metrics_port=0,
        device="cpu",
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def served(model_repository: Path) -> Iterator[RunningServer]:
    """Every model of the repository, settings from config.pbtxt."""
    running = RunningServer(server_options(model_repository))
    yield running
    running.close()


@pytest.fixture
def start_server(model_repository: Path) -> Iterator[Any]:
    """A factory for servers with non-default options; each is stopped after the test."""
    started: list[RunningServer] = []

    def start(**overrides: Any) -> RunningServer:
        running = RunningServer(server_options(model_repository, **overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


def _start_serve(repository: Path, ready_file: Path, *extra: str) -> subprocess.Popen[str]:
    """The server's stderr stays a pipe: the process tests read its log from it."""
    command = [
        *serve_command(), "serve", "--model-repository", str(repository),
        "--model", MODEL, "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0",
        "--metrics-port", "0", "--ready-file", str(ready_file), *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO_ROOT, env=child_env(), stderr=subprocess.PIPE, text=True)


def _wait_ready(process: subprocess.Popen[str], ready_file: Path, timeout_s: float = 90) -> dict[str, int]:
    def tail() -> str:  # the pipe can be read whole only once the server has exited
        return process.stderr.read()[-3000:] if process.poll() is not None and process.stderr else ""

    try:
        return wait_ready(process, ready_file, timeout_s, tail)
    except ServerStartError as exc:
        process.kill()
        pytest.fail(str(exc))


@pytest.fixture
def serve_cli():
    """`servescope serve` as a child process: start(repository, ready_file, *flags), wait_ready(...)."""
    import types

    return types.SimpleNamespace(start=_start_serve, wait_ready=_wait_ready)
