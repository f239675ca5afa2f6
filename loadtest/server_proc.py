"""Start and stop `servescope serve` for a campaign (port 0, --ready-file), in its own process group."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from loadtest import procs
from servescope.settings import ServeFlags, serve_argv

READY_TIMEOUT_S = 180.0


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
        return procs.stop_group(self.proc, signal.SIGTERM, grace_s)


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
    ready_file.unlink(missing_ok=True)
    log_path = work_dir / f"{name}.log"
    args = serve_argv(
        [procs.python(), "-m", "cli"], str(repository), models, setting, ready_file=str(ready_file)
    )
    proc = procs.spawn(args, log_path)
    try:
        return _wait_ready(proc, ready_file, log_path)
    except BaseException:  # not ready, or Ctrl-C while waiting: never leave the server behind
        procs.stop_group(proc, signal.SIGTERM, 5.0)
        raise


def _wait_ready(proc: subprocess.Popen[bytes], ready_file: Path, log_path: Path) -> ManagedServer:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"servescope serve exited with code {proc.returncode} before it was ready:\n{_tail(log_path)}"
            )
        if ready_file.is_file():
            try:
                ready = json.loads(ready_file.read_text())
                http_port = ready.get("http_port")
                return ManagedServer(
                    proc,
                    int(ready["grpc_port"]),
                    int(ready["metrics_port"]),
                    log_path,
                    int(http_port) if http_port is not None else None,
                )
            except (ValueError, KeyError):
                pass  # written atomically, but be patient with a foreign writer
        time.sleep(0.1)
    raise ServerStartError(
        f"servescope serve was not ready within {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}"
    )
