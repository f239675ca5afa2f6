"""Server lifecycle: load and warm up, listen (gRPC, KServe v2 REST, metrics HTTP), become ready, drain, stop.

`Server(options)` is usable in-process (tests, the load tester, the demo): `await server.start()`
returns the bound gRPC and metrics ports (`server.http_port` is the REST one), `await server.stop()`
drains and stops. gRPC and REST run in the same event loop over the same data plane. `serve(options)`
runs it until SIGTERM or SIGINT for the command line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from prometheus_client import CollectorRegistry

from server.batcher import BatchSettings
from server.dataplane import DataPlane
from server.gpu import gpu_count
from server.http import MetricsHttpServer
from server.loop_monitor import LoopMonitor
from server.metrics import ServerMetrics
from server.model import CPU, ModelRunner, RuntimeOptions
from server.rest import RestFrontEnd
from server.servicer import ErrorStatusInterceptor, InferenceServicer, add_to_server
from server.shared_stats import SharedStats
from servescope import metrics as contract
from servescope.protocol import POOL, SERVICE_NAME
from servescope.protocol import model_config_pb2 as mc
from servescope.repository import ModelEntry, RepositoryError, list_models

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DRAIN_LINGER_S = 0.25


@dataclass(frozen=True)
class ServerOptions:
    """Everything `servescope serve` can be told. None means "as config.pbtxt says"."""

    model_repository: Path
    models: tuple[str, ...] = ()
    host: str = "0.0.0.0"
    grpc_port: int = 8001
    http_port: int | None = 8000  # KServe v2 REST; None: not served
    metrics_port: int | None = 8002
    device: str = "auto"
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None
    batching: bool = True
    adaptive_delay: bool = True
    max_queue_size: int | None = None
    instances: int | None = None
    intra_op_threads: int = 0
    grace_period_s: float = 30.0
    ready_file: Path | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls_cert: Path | None = None
    tls_key: Path | None = None
    extra_grpc_options: tuple[tuple[str, int], ...] = field(default=())
    # Several worker processes (server/supervisor.py): their count, and each worker's own part. A
    # worker shares the gRPC port (SO_REUSEPORT), serves no metrics port (metrics_port None: the
    # supervisor serves the whole server's) and shares its statistics through shared_dir.
    workers: int = 1
    worker_index: int = 0
    reuse_port: bool = False
    shared_dir: Path | None = None


def batch_settings(config: mc.ModelConfig, options: ServerOptions) -> BatchSettings:
    """A model's batching settings: config.pbtxt, then the command-line overrides."""
    max_batch_size = options.max_batch_size or int(config.max_batch_size)
    has_batcher = config.HasField("dynamic_batching")
    dynamic = config.dynamic_batching
    delay_us = options.max_queue_delay_us
    if delay_us is None:
        delay_us = int(dynamic.max_queue_delay_microseconds)
    queue_size = options.max_queue_size
    if queue_size is None:
        queue_size = int(dynamic.default_queue_policy.max_queue_size)
    instances = options.instances or sum(group.count for group in config.instance_group) or 1
    preferred = tuple(sorted({int(s) for s in dynamic.preferred_batch_size if 0 < s <= max_batch_size}))
    batching = options.batching and (has_batcher or options.max_queue_delay_us is not None)
    return BatchSettings(
        max_batch_size=max_batch_size,
        max_queue_delay_us=delay_us,
        preferred_batch_sizes=preferred,
        max_queue_size=queue_size,
        max_concurrent_batches=instances,
        batching=batching,
        adaptive_delay=options.adaptive_delay,
    )


def write_ready_file(path: Path, grpc_port: int, metrics_port: int, http_port: int | None = None) -> None:
    """{"grpc_port", "http_port", "metrics_port", "pid"} as JSON (http_port null when REST is off),
    written atomically (rename) so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(
        {"grpc_port": grpc_port, "http_port": http_port, "metrics_port": metrics_port, "pid": os.getpid()}
    )
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(payload + "\n")
    os.replace(handle.name, path)


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """Every served service's descriptors in one pool, for server reflection.

    The protocol lives in servescope's private pool (POOL) and health and reflection in protobuf's
    default pool; reflection answers from a single pool, so they are copied into a fresh one.
    """
    pool = descriptor_pool.DescriptorPool()
    for file in (
        POOL.FindFileByName("servescope/protocol/model_config.proto"),
        POOL.FindFileByName("servescope/protocol/grpc_service.proto"),
        health_pb2.DESCRIPTOR,
        reflection_pb2.DESCRIPTOR,
    ):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))
    return pool


class Server:
    """One servescope server: models, gRPC service, health, reflection, metrics HTTP."""

    def __init__(
        self,
        options: ServerOptions,
        registry: CollectorRegistry | None = None,
        *,
        before_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Args:
        before_ready: awaited once every model is loaded, before the server turns ready (a worker waits
            there for the other workers).
        """
        self.options = options
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ServerMetrics(self.registry, worker=options.worker_index)
        self.shared = (
            SharedStats(options.shared_dir, options.worker_index) if options.shared_dir is not None else None
        )
        self.core = DataPlane(
            self.metrics,
            workers=options.workers,
            whole_server=self.shared.whole_server if self.shared is not None else None,
        )
        self._before_ready = before_ready
        worker = self.metrics.worker
        self._monitor = LoopMonitor(
            self.metrics[contract.EVENT_LOOP_LAG].labels(worker=worker),
            self.metrics[contract.WORKER_CPU].labels(worker=worker),
            contract.LOOP_TICK_S,
        )
        self.grpc_port = 0
        self.http_port: int | None = None
        self.metrics_port = 0
        self._live = False
        self._grpc: grpc.aio.Server | None = None
        self._rest = RestFrontEnd(self.core, lambda: self._live, options.max_message_bytes)
        self._health = health.aio.HealthServicer()
        self._http = MetricsHttpServer(self.registry, lambda: self._live, lambda: self.core.ready)
        self._stopped = False

    def _select(self) -> list[ModelEntry]:
        entries = list_models(self.options.model_repository)
        if not self.options.models:
            return entries
        by_name = {entry.name: entry for entry in entries}
        unknown = [name for name in self.options.models if name not in by_name]
        if unknown:
            raise RepositoryError(
                f"{self.options.model_repository}: --model {unknown[0]!r} is not in the repository "
                f"(has {sorted(by_name)})"
            )
        return [by_name[name] for name in dict.fromkeys(self.options.models)]

    async def start(self) -> tuple[int, int]:
        """Listen, load and warm up every model, then turn ready; returns (grpc_port, metrics_port)."""
        options = self.options
        entries = self._select()
        self.core.loading.update(entry.name for entry in entries)
        await self._health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._grpc = grpc.aio.server(
            interceptors=[ErrorStatusInterceptor()],
            options=[
                ("grpc.max_receive_message_length", options.max_message_bytes),
                ("grpc.max_send_message_length", options.max_message_bytes),
                ("grpc.so_reuseport", 1 if options.reuse_port else 0),
                *options.extra_grpc_options,
            ],
        )
        add_to_server(InferenceServicer(self.core, lambda: self._live), self._grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        services = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, self._grpc, pool=reflection_pool())
        address = f"{options.host}:{options.grpc_port}"
        try:
            if options.tls_cert or options.tls_key:
                if not (options.tls_cert and options.tls_key):
                    raise ValueError("--tls-cert and --tls-key must be given together")
                credentials = grpc.ssl_server_credentials(
                    [(options.tls_key.read_bytes(), options.tls_cert.read_bytes())]
                )
                self.grpc_port = self._grpc.add_secure_port(address, credentials)
            else:
                self.grpc_port = self._grpc.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {address}: {exc}") from exc
        await self._grpc.start()
        self._monitor.start()
        try:
            if options.http_port is not None:
                tls = (options.tls_cert, options.tls_key) if options.tls_cert and options.tls_key else None
                try:
                    self.http_port = await self._rest.start(
                        options.host, options.http_port, reuse_port=options.reuse_port, tls=tls
                    )
                except OSError as exc:
                    raise OSError(f"cannot listen for HTTP on {options.host}:{options.http_port}: "
                                  f"{exc.strerror or exc}") from exc  # fmt: skip
            if options.metrics_port is not None:
                try:
                    self.metrics_port = await self._http.start(options.host, options.metrics_port)
                except OSError as exc:
                    raise OSError(f"cannot listen for metrics HTTP on {options.host}:{options.metrics_port}: "
                                  f"{exc.strerror or exc}") from exc  # fmt: skip
            self._live = True
            log.info("listening: gRPC %s:%d, REST %s, metrics %s", options.host, self.grpc_port,
                     f"{options.host}:{self.http_port}" if self.http_port is not None else "off",
                     f"http://{options.host}:{self.metrics_port}/metrics" if self.metrics_port
                     else "through the supervisor")  # fmt: skip
            await self._load(entries)
            if self._before_ready is not None:
                await self._before_ready()
        except BaseException:
            await self._abort_start()
            raise
        self.core.ready = True
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        if options.ready_file is not None:
            write_ready_file(options.ready_file, self.grpc_port, self.metrics_port, self.http_port)
        if self.shared is not None:
            self.shared.start(lambda: [served.stats for served in self.core.models.values()])
        log.info("ready: %d model(s) loaded and warmed up", len(self.core.models))
        return self.grpc_port, self.metrics_port

    async def _load(self, entries: list[ModelEntry]) -> None:
        options = self.options
        loop = asyncio.get_running_loop()
        if options.device == "auto" and await loop.run_in_executor(None, gpu_count) == 0:
            log.info("device auto: NVML finds no GPU, running on %s", CPU)
        for entry in entries:
            settings = batch_settings(entry.config, options)
            runtime = RuntimeOptions(
                options.device, options.intra_op_threads, settings.max_concurrent_batches, options.workers
            )
            runner = await loop.run_in_executor(None, ModelRunner, entry, None, runtime)
            warm_sizes = {1, settings.max_batch_size, *settings.preferred_batch_sizes}
            await loop.run_in_executor(None, runner.warm_up, sorted(warm_sizes))
            self.core.add_model(runner, settings)
            log.info(
                "model %s version %s on %s: max_batch_size %d, batching %s, delay %d us, preferred %s, "
                "max_queue_size %d, instances %d",
                entry.name, runner.version, runner.provider, settings.max_batch_size,
                "on" if settings.batching else "off", settings.max_queue_delay_us,
                list(settings.preferred_batch_sizes), settings.max_queue_size,
                settings.max_concurrent_batches,
            )  # fmt: skip

    async def _abort_start(self) -> None:
        """Release the ports and the models loaded so far after a failed start."""
        self._stopped = True
        if self._grpc is not None:
            await self._grpc.stop(grace=None)
        await self._rest.stop()
        self._live = False
        await self._monitor.stop()
        await self._http.stop()
        await self.core.close()

    async def stop(self, grace_s: float | None = None) -> bool:
        """Drain: not ready, new requests UNAVAILABLE, accepted ones finish (up to grace_s); then stop.

        Returns True when every accepted request finished within the grace period.
        """
        if self._stopped:
            return True
        self._stopped = True
        grace_s = self.options.grace_period_s if grace_s is None else grace_s
        self.core.draining = True
        self.core.ready = False
        await self._health.enter_graceful_shutdown()
        started_s = time.monotonic()
        drained = await self.core.drain(grace_s)
        if not drained:
            log.warning("grace period of %.1f s over with requests still running", grace_s)
        # Calls already on the wire when draining began have not reached a handler yet: keep refusing
        # them with UNAVAILABLE (REST: 503) for a moment, or gRPC's stop would cancel them with a bare
        # CANCELLED and REST's would close their connections.
        linger_s = min(DRAIN_LINGER_S, max(0.0, grace_s - (time.monotonic() - started_s)))
        await asyncio.sleep(linger_s)
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        await self._rest.stop()
        self._live = False
        await self._monitor.stop()
        if self.shared is not None:
            await self.shared.stop([served.stats for served in self.core.models.values()])
        await self._http.stop()
        await self.core.close()
        return drained


def serve(options: ServerOptions) -> int:
    """Run a server until SIGTERM or SIGINT, then drain and return the exit code (0)."""

    async def main() -> int:
        server = Server(options)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        start = loop.create_task(server.start())
        waiter = loop.create_task(stop.wait())
        done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if start in done:
            start.result()  # raise a startup error
            await waiter
        else:
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
        log.info("signal received: draining (grace period %.1f s)", options.grace_period_s)
        drained = await server.stop()
        log.info("stopped (%s)", "all accepted requests answered" if drained else "grace period expired")
        return 0

    return asyncio.run(main())
