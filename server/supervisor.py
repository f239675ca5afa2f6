"""`servescope serve --workers N`: N worker processes on one gRPC port (and one REST port), and the
process that supervises them.

The supervisor holds no gRPC state: it reserves the ports (bound, never listening SO_REUSEPORT
sockets, so port 0 means one port for all), spawns the workers (server/worker.py), serves the whole server's
/metrics, /healthz and /readyz, restarts a worker that dies (logged, counted in
servescope_worker_restarts_total; the others keep serving), and on SIGTERM or SIGINT forwards SIGTERM so
that every worker drains, then exits 0.

Metrics use prometheus_client's multiprocess mode: a fresh folder per server start
(servescope-<pid>-*, in the temporary folder), named in PROMETHEUS_MULTIPROC_DIR before any worker
imports prometheus_client, removed on exit; folders left by a supervisor that was killed are removed
at the next start. The same folder carries the workers' statistics (shared_stats.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servescope.errors import CommandError, UsageError

log = logging.getLogger(__name__)

FOLDER_PREFIX = "servescope-"
STOP_MARGIN_S = 10.0  # after the grace period, how long workers get to exit before SIGKILL
EVENT_POLL_S = 0.05


def fresh_shared_folder() -> Path:
    """A new multiprocess folder for this start; folders of supervisors that no longer run are removed."""
    root = Path(tempfile.gettempdir())
    for stale in root.glob(f"{FOLDER_PREFIX}*"):
        pid = stale.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reserve_port(host: str, port: int, protocol: str = "gRPC") -> socket.socket:
    """A bound (never listening) SO_REUSEPORT socket: keeps the port for the workers, takes no calls."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for {protocol} on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


RESTART_BACKOFF_S = 1.0  # a worker that dies within this long of its start waits this long to restart


@dataclasses.dataclass
class _Worker:
    index: int
    process: Any  # multiprocessing.Process
    ready: bool = False
    started_s: float = 0.0


class Supervisor:
    """Starts, watches and stops the workers of one server (see the module docstring)."""

    def __init__(self, options: Any, shared: Path, log_level: str = "INFO") -> None:
        self.options = options
        self.shared = shared
        self.log_level = log_level
        self.context = multiprocessing.get_context("spawn")
        self.events = self.context.Queue()
        self.gate = self.context.Event()
        self.workers: dict[int, _Worker] = {}
        self.restarts = 0
        self.stopping = False
        self.started = False  # every worker was ready once: the server is up
        self.grpc_port = 0
        self.http_port: int | None = None
        self.metrics_port = 0

    # ---- state the metrics port reports ---------------------------------------------------------

    def ready_workers(self) -> int:
        return sum(1 for w in self.workers.values() if w.ready and w.process.is_alive())

    def is_ready(self) -> bool:
        """Up once every worker was ready; stays up while at least one serves (a restart in progress)."""
        return self.started and not self.stopping and self.ready_workers() > 0

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self.workers.values() if w.process.pid and w.process.is_alive()]

    # ---- lifecycle ---------------------------------------------------------------------------------

    def _spawn(self, index: int, worker_options: Any) -> None:
        from server.worker import run_worker

        process = self.context.Process(
            target=run_worker,
            args=(worker_options, index, self.events, self.gate, self.log_level),
            name=f"servescope-worker-{index}",
        )
        process.start()
        self.workers[index] = _Worker(index, process, started_s=time.monotonic())
        log.info("worker %d started (pid %d)", index, process.pid)

    async def run(self) -> int:
        from server.app import write_ready_file
        from server.http import MetricsHttpServer

        options = self.options
        reservation = reserve_port(options.host, options.grpc_port)
        self.grpc_port = reservation.getsockname()[1]
        reservations = [reservation]
        if options.http_port is not None:
            try:
                reservations.append(reserve_port(options.host, options.http_port, "HTTP"))
            except OSError:
                reservation.close()
                raise
            self.http_port = reservations[-1].getsockname()[1]
        worker_options = dataclasses.replace(
            options, grpc_port=self.grpc_port, http_port=self.http_port, metrics_port=None, ready_file=None,
            reuse_port=True, shared_dir=self.shared,
        )  # fmt: skip
        metrics_host = options.metrics_host or options.host
        http = MetricsHttpServer(
            supervisor_registry(self), lambda: True, self.is_ready, metrics_host, options.metrics_port
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            self.metrics_port = await http.start()
            for index in range(options.workers):
                self._spawn(index, worker_options)
            log.info(
                "listening: gRPC %s:%d, REST %s (%d workers), metrics http://%s:%d/metrics",
                options.host, self.grpc_port,
                f"{options.host}:{self.http_port}" if self.http_port is not None else "off",
                options.workers, metrics_host, self.metrics_port,
            )  # fmt: skip
            if not await self._start_all(stop):
                return 0  # a signal came before the server was ready
            if options.ready_file is not None:
                write_ready_file(options.ready_file, self.grpc_port, self.metrics_port, self.http_port)
            log.info("ready: %d workers", options.workers)
            await self._watch(stop, worker_options)
            log.info("signal received: draining %d workers (grace period %.1f s)", len(self.workers),
                     options.grace_period_s)  # fmt: skip
        finally:
            await self._stop_all()
            await http.stop()
            for held in reservations:
                held.close()
        log.info("stopped")
        return 0

    async def _start_all(self, stop: asyncio.Event) -> bool:
        """Wait until every worker loaded its models, open the gate, wait until all serve."""
        loaded: set[int] = set()
        while True:
            if stop.is_set():
                return False
            for kind, index, _pid, detail in self._drain_events():
                if kind == "failed":
                    code, message = detail
                    raise (UsageError if code == 2 else CommandError)(message)
                if kind == "loaded":
                    loaded.add(index)
                if kind == "ready":
                    self.workers[index].ready = True
            for worker in self.workers.values():
                if not worker.process.is_alive() and not worker.ready:
                    raise CommandError(
                        f"worker {worker.index} exited with code {worker.process.exitcode} while starting"
                    )
            if len(loaded) == len(self.workers):
                self.gate.set()
            if all(w.ready for w in self.workers.values()):
                self.started = True
                return True
            await asyncio.sleep(EVENT_POLL_S)

    async def _watch(self, stop: asyncio.Event, worker_options: Any) -> None:
        """Until a signal: note workers that turn ready, restart those that die."""
        from prometheus_client import multiprocess

        while not stop.is_set():
            for kind, index, pid, detail in self._drain_events():
                worker = self.workers.get(index)
                if kind == "ready" and worker is not None and worker.process.pid == pid:
                    worker.ready = True
                    log.info("worker %d ready again (pid %d)", index, pid)
                elif kind == "failed":
                    log.error("worker %d could not start again: %s", index, detail[1])
            for worker in list(self.workers.values()):
                if worker.process.is_alive():
                    continue
                if time.monotonic() - worker.started_s < RESTART_BACKOFF_S:
                    continue  # died at once: do not restart it in a tight loop
                pid, code = worker.process.pid, worker.process.exitcode
                multiprocess.mark_process_dead(pid, str(self.shared))
                self.restarts += 1
                log.error(
                    "worker %d (pid %d) died (exit code %s): starting it again", worker.index, pid, code
                )
                self._spawn(worker.index, worker_options)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), EVENT_POLL_S * 4)

    async def _stop_all(self) -> None:
        """SIGTERM every worker (each drains), wait, SIGKILL what is left after the grace period."""
        from prometheus_client import multiprocess

        self.stopping = True
        self.gate.set()  # a worker still waiting for the gate stops instead of waiting forever
        for worker in self.workers.values():
            if worker.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.options.grace_period_s + STOP_MARGIN_S
        while any(w.process.is_alive() for w in self.workers.values()) and time.monotonic() < deadline:
            await asyncio.sleep(EVENT_POLL_S)
        for worker in self.workers.values():
            if worker.process.is_alive():
                log.warning("worker %d did not stop in time: killing it", worker.index)
                worker.process.kill()
            worker.process.join(5)
            if worker.process.pid:
                multiprocess.mark_process_dead(worker.process.pid, str(self.shared))

    def _drain_events(self) -> Iterator[tuple[str, int, int, Any]]:
        while True:
            try:
                yield self.events.get_nowait()
            except queue.Empty:
                return


def supervisor_registry(supervisor: Supervisor) -> Any:
    """The whole server's metrics: the workers' (multiprocess files), the GPUs, the processes' CPU and
    memory, and the supervisor's own."""
    from prometheus_client import CollectorRegistry, multiprocess

    from server.gpu import GpuCollector
    from server.process_metrics import ProcessTreeCollector, SupervisorCollector

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(supervisor.shared))
    registry.register(GpuCollector())
    registry.register(ProcessTreeCollector(lambda: [os.getpid(), *supervisor.worker_pids()]))
    registry.register(SupervisorCollector(supervisor))
    return registry


def serve_workers(options: Any, log_level: str = "INFO") -> int:
    """Run a multi-worker server until SIGTERM or SIGINT; 0 once every worker drained."""
    shared = fresh_shared_folder()
    # Before any worker imports prometheus_client; workers inherit the environment.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    try:
        return asyncio.run(Supervisor(options, shared, log_level).run())
    finally:
        shutil.rmtree(shared, ignore_errors=True)
