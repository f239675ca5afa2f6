"""Child processes (Locust, the server) in their own process groups, stopped politely then firmly.

Every child starts in a new session, so a Ctrl-C on the terminal reaches only the driver, which then
stops its children in order; `stop_group` signals the whole group, so nothing a child started lingers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def child_env(extra: dict[str, str] | None = None, root: Path = REPO_ROOT) -> dict[str, str]:
    """The environment for children: the repository root (or another checkout's) importable, whatever
    the install mode."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(root) + (os.pathsep + path if path else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def spawn(
    args: list[str], log_path: Path, env: dict[str, str] | None = None, root: Path = REPO_ROOT
) -> subprocess.Popen[bytes]:
    """Start args in their own process group in `root` (this checkout, or another one's: `python -m`
    imports from the working folder first), output appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env or child_env(root=root),
            cwd=str(root),
            start_new_session=True,
        )


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_group(
    proc: subprocess.Popen[bytes], first: int = signal.SIGTERM, grace_s: float = 10.0
) -> int | None:
    """Send `first` to the process group, wait up to grace_s, then SIGKILL the group. Returns the code."""
    if proc.poll() is None:
        signal_group(proc, first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # The leader may have exited while others of its group live on: kill the group in any case.
    signal_group(proc, signal.SIGKILL)
    try:
        return proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        return None


def stop_all(procs: list[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """SIGTERM every group at once, give them grace_s together, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        stop_group(proc, signal.SIGKILL, 0.0)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for Locust's master, which cannot take port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def python() -> str:
    return sys.executable
