"""Start and stop the three servers of the peer benchmark, one at a time, on loopback.

Each server runs as its own process group: servescope from the main environment, Triton (PyTriton)
and MLServer from their own environments (venvs.py). Readiness is the same for all three: the
KServe v2 ModelReady RPC answers true. Stopping sends SIGTERM (Triton ignores SIGINT in the
background) and kills the group if it has not exited after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import venvs

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
# servescope with its default worker processes, and with one (today's single event loop), for scale.
SERVERS = ("servescope", "servescope-1w", "triton", "mlserver")
CONNECTIONS = 8  # gRPC connections of the benchmark client, the same for every server


def _multi_workers() -> int:
    """servescope's multi-worker line: --workers auto where that is more than one, else two."""
    sys.path.insert(0, str(REPO_ROOT))
    from servescope.cores import available_cores

    return max(2, available_cores() // 2)


MULTI_WORKERS = _multi_workers()

log = logging.getLogger("peers.servers")


class ServerStartError(RuntimeError):
    """A server did not become ready; the message ends with the tail of its log."""


@dataclass
class RunningServer:
    name: str
    settings: dict[str, Any]
    process: subprocess.Popen
    grpc_target: str
    metrics_url: str
    log_path: Path
    workdir: Path
    started_s: float = field(default=0.0)  # seconds from launch to ready


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_settings(name: str) -> dict[str, Any]:
    """A sensible starting point; the sweep (run.py) replaces it with the best it finds."""
    return {
        "servescope": {
            "max_batch_size": 64,
            "max_queue_delay_us": 1000,
            "instances": 1,
            "workers": MULTI_WORKERS,
        },
        "servescope-1w": {"max_batch_size": 64, "max_queue_delay_us": 1000, "instances": 1, "workers": 1},
        "triton": {"max_batch_size": 64, "max_queue_delay_us": 1000, "instances": 1},
        "mlserver": {"max_batch_size": 64, "max_batch_time_s": 0.001, "parallel_workers": 0},
    }[name]


def chosen_settings(name: str, override_json: str | None = None) -> dict[str, Any]:
    """Settings to start a peer with: the JSON given, else the load settings the last benchmark chose
    (results/latest.json), else the built-in defaults."""
    if override_json:
        return json.loads(override_json)
    latest = HERE / "results" / "latest.json"
    if latest.is_file():
        chosen = json.loads(latest.read_text()).get("settings", {}).get(name, {})
        if "load" in chosen:
            return chosen["load"]
    return default_settings(name)


def _command(
    name: str,
    settings: dict[str, Any],
    model_repository: Path,
    model: str,
    workdir: Path,
    grpc_port: int,
    metrics_port: int,
) -> tuple[list[str], dict[str, str], Path | None]:
    """The command line, environment and ready file (or None) for one server."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    ready = workdir / "ready.json"
    if name.startswith("servescope"):
        # The repository root on the path, so `server` imports even from an editable install made
        # before the package existed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        from servescope.settings import ServeFlags, serve_argv

        flags = ServeFlags(
            max_batch_size=settings["max_batch_size"],
            max_queue_delay_us=settings["max_queue_delay_us"],
            instances=settings["instances"],
            intra_op_threads=settings.get("intra_op_threads") or None,
            device="cpu",
            workers=settings.get("workers", 1),
        )
        cmd = serve_argv(
            [str(Path(sys.executable).parent / "servescope")],
            str(model_repository),
            [model],
            flags,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            ready_file=str(ready),
        )
        return cmd, env, ready
    model_file = model_repository / model / "1" / "model.onnx"
    if name == "triton":
        python = venvs.ensure("triton")
        cmd = [
            str(python),
            str(HERE / "triton" / "serve.py"),
            "--model-file",
            str(model_file),
            "--model-name",
            model,
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(metrics_port),
            "--max-batch-size",
            str(settings["max_batch_size"]),
            "--max-queue-delay-us",
            str(settings["max_queue_delay_us"]),
            "--instances",
            str(settings["instances"]),
            "--intra-op-threads",
            str(settings.get("intra_op_threads", 0)),
            "--ready-file",
            str(ready),
            "--workspace",
            str(workdir / "pytriton"),
        ]
        if settings.get("ort_spinning"):
            cmd.append("--ort-spinning")
        return cmd, {**venvs.triton_environment(), "PYTHONUNBUFFERED": "1"}, ready
    if name == "mlserver":
        python = venvs.ensure("mlserver")
        _write_mlserver_settings(settings, model_file, model, workdir, grpc_port, metrics_port)
        cmd = [str(python.parent / "mlserver"), "start", str(workdir / "mlserver")]
        return cmd, env, None
    raise ValueError(f"unknown server {name!r}; expected one of {SERVERS}")


def _write_mlserver_settings(
    settings: dict[str, Any], model_file: Path, model: str, workdir: Path, grpc_port: int, metrics_port: int
) -> None:
    root = workdir / "mlserver"
    model_dir = root / model
    model_dir.mkdir(parents=True, exist_ok=True)
    server = {
        "debug": False,
        "host": "127.0.0.1",
        "grpc_port": grpc_port,
        "http_port": free_port(),
        "metrics_port": metrics_port,
        "parallel_workers": settings["parallel_workers"],
        "metrics_dir": str(workdir / "mlserver-metrics"),
        "environments_dir": str(workdir / "mlserver-envs"),
        "load_models_at_startup": True,
    }
    (root / "settings.json").write_text(json.dumps(server, indent=2))
    model_settings = {
        "name": model,
        # Declared like Triton's config so ModelMetadata describes the tensors (the Locust user builds
        # its payload from it).
        **_mlserver_tensors(model_file.parent.parent / "config.pbtxt"),
        "implementation": "runtime.OnnxRuntimeModel",
        "max_batch_size": settings["max_batch_size"],
        "max_batch_time": settings["max_batch_time_s"],
        "parameters": {
            "uri": str(model_file.resolve()),
            "extra": {
                "intra_op_threads": settings.get("intra_op_threads", 0),
                "ort_spinning": bool(settings.get("ort_spinning", False)),
            },
        },
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    shutil.copy(HERE / "mlserver" / "runtime.py", model_dir / "runtime.py")


def _mlserver_tensors(config_file: Path) -> dict[str, list[dict[str, Any]]]:
    """inputs/outputs metadata for model-settings.json from the model's config.pbtxt."""
    from servescope.protocol import model_config_pb2 as mc
    from servescope.repository import read_config

    config = read_config(config_file)
    batch = [-1] if config.max_batch_size > 0 else []

    def datatype(value: int) -> str:
        name = mc.DataType.Name(value).removeprefix("TYPE_")
        return "BYTES" if name == "STRING" else name

    def describe(tensors) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "datatype": datatype(t.data_type), "shape": batch + list(t.dims)}
            for t in tensors
        ]

    return {"inputs": describe(config.input), "outputs": describe(config.output)}


def model_ready(target: str, model: str, timeout_s: float = 1.0) -> bool:
    import grpc

    from servescope.protocol import grpc_service_pb2 as pb
    from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            return stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=timeout_s).ready
        except grpc.RpcError:
            return False


def start(
    name: str,
    settings: dict[str, Any],
    model_repository: Path,
    model: str,
    workdir: Path,
    timeout_s: float = 180.0,
) -> RunningServer:
    """Launch a server and wait until its model is ready; raise ServerStartError otherwise."""
    workdir.mkdir(parents=True, exist_ok=True)
    grpc_port, metrics_port = free_port(), free_port()
    cmd, env, ready_file = _command(name, settings, model_repository, model, workdir, grpc_port, metrics_port)
    log_path = workdir / f"{name}.log"
    t0 = time.perf_counter()
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True
        )
    server = RunningServer(
        name=name,
        settings=dict(settings),
        process=process,
        grpc_target=f"127.0.0.1:{grpc_port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        log_path=log_path,
        workdir=workdir,
    )
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise ServerStartError(
                f"{name} exited with code {process.returncode} before it was ready; log {log_path}:\n"
                + _tail(log_path)
            )
        if (ready_file is None or ready_file.exists()) and model_ready(server.grpc_target, model):
            server.started_s = time.perf_counter() - t0
            log.info("%s ready on %s in %.1f s (%s)", name, server.grpc_target, server.started_s, settings)
            return server
        time.sleep(0.25)
    stop(server)
    raise ServerStartError(f"{name} not ready after {timeout_s:.0f} s; log {log_path}:\n" + _tail(log_path))


def stop(server: RunningServer, grace_s: float = 30.0) -> int | None:
    """SIGTERM the server's process group, wait, then SIGKILL what is left. Returns the exit code."""
    process = server.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s of SIGTERM; killing it", server.name, grace_s)
    # Children (tritonserver, MLServer workers) may outlive the leader: clear the whole group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return process.returncode


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (0 when it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
