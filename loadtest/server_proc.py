"""Start `servescope serve` as a child process, wait for its ready file, stop it: the one helper for the
campaign, the benchmarks and the tests.

The child runs `python -m cli serve` from this checkout (serve_command): server/ has no entry point of its
own. It starts in its own process group (procs.spawn), so stopping it stops whatever it started.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import procs
from servescope.settings import ServeFlags, serve_argv

READY_TIMEOUT_S = 180.0


def serve_command(*cli_flags: str) -> list[str]:
    """The command that runs the CLI of this checkout (add "serve" and its flags, or pass to serve_argv)."""
    return [procs.python(), "-m", "cli", *cli_flags]


class ServerStartError(RuntimeError):
    """The server exited or did not become ready in time; the message carries its last log lines."""


@dataclass
class ManagedServer:
    proc: subprocess.Popen[bytes]
    grpc_port: int
    metrics_port: int
    log_path: Path
    http_port: int | None = None  # KServe v2 REST

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_target(self) -> str | None:
        return None if self.http_port is None else f"127.0.0.1:{self.http_port}"

    def target_for(self, protocol: str) -> str:
        """The address of the server for a protocol ("grpc" or "http")."""
        if protocol == "http":
            if self.http_target is None:
                raise ServerStartError("the server serves no REST API (started with --no-http)")
            return self.http_target
        return self.target

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM (the server drains and exits 0), then SIGKILL the group after grace_s."""
        return stop_server(self.proc, grace_s)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def start_server(
    repository: Path, models: list[str], setting: ServeFlags, work_dir: Path, name: str
) -> ManagedServer:
    """Start the server and wait until its ready file appears (every model loaded and warmed up)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    ready_file = work_dir / f"{name}.ready.json"
    args = serve_argv(serve_command(), str(repository), models, setting, ready_file=str(ready_file))
    proc, ready, log_path = spawn_ready(args, ready_file, work_dir / f"{name}.log")
    http_port = ready.get("http_port")
    return ManagedServer(
        proc,
        int(ready["grpc_port"]),
        int(ready["metrics_port"]),
        log_path,
        int(http_port) if http_port is not None else None,
    )


def spawn_ready(
    args: list[str],
    ready_file: Path,
    log_path: Path,
    timeout_s: float = READY_TIMEOUT_S,
    root: Path = procs.REPO_ROOT,
) -> tuple[subprocess.Popen[bytes], dict[str, Any], Path]:
    """Start a server command (it must write `ready_file`) in its own process group, its output in
    log_path, and wait for the file. Returns the process, the ready file's content and the log path.
    `root`: the checkout whose code runs (another one's for a before/after benchmark).

    Raises:
        ServerStartError: it exited, or was not ready within timeout_s (its last log lines attached); the
            process is stopped.
    """
    ready_file.unlink(missing_ok=True)
    proc = procs.spawn(args, log_path, root=root)
    try:
        return proc, wait_ready(proc, ready_file, timeout_s, lambda: _tail(log_path)), log_path
    except BaseException:  # not ready, or Ctrl-C while waiting: never leave the server behind
        procs.stop_group(proc, signal.SIGTERM, 5.0)
        raise


def wait_ready(
    proc: subprocess.Popen[Any], ready_file: Path, timeout_s: float, tail: Callable[[], str]
) -> dict[str, Any]:
    """Wait for `ready_file` (JSON: the ports) while `proc` lives; `tail()` says why when it does not come.

    Raises:
        ServerStartError: the process exited first, or timeout_s passed.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"servescope serve exited with code {proc.returncode} before it was ready:\n{tail()}"
            )
        if ready_file.is_file():
            try:
                ready = json.loads(ready_file.read_text())
                if isinstance(ready, dict) and "grpc_port" in ready:
                    return ready
            except ValueError:
                pass  # written atomically, but be patient with a foreign writer
        time.sleep(0.05)
    raise ServerStartError(f"servescope serve was not ready within {timeout_s:.0f} s:\n{tail()}")


def stop_server(proc: subprocess.Popen[Any], grace_s: float = 20.0) -> int | None:
    """SIGTERM (the server drains and exits 0), then SIGKILL its group after grace_s; the exit code."""
    return procs.stop_group(proc, signal.SIGTERM, grace_s)
