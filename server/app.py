"""Server lifecycle: listen (its front ends), load and warm up, become ready, drain, stop.

`Server(options)` is usable in-process (tests, the load tester, the demo): `await server.start()`
returns the bound gRPC and metrics ports (`server.http_port` is the REST one), `await server.stop()`
drains and stops. The front ends (gRPC, REST, metrics HTTP: frontend.py) run in the same event loop
over the same data plane. `serve(options)`
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
from typing import Any

from prometheus_client import CollectorRegistry

from server.admission import Admission
from server.batcher import BatchSettings
from server.dataplane import DataPlane
from server.frontend import FrontDoor, FrontEnd
from server.gpu import gpu_count
from server.grpc_frontend import GrpcFrontEnd, GrpcSettings
from server.http import MetricsHttpServer
from server.loop_monitor import LoopMonitor
from server.metrics import ServerMetrics
from server.model import CPU, ModelRunner, RuntimeOptions
from server.rest import RestFrontEnd
from server.restricted import Restriction, Restrictions
from server.servicer import DEFAULT_STREAM_MAX_INFLIGHT
from server.shared_stats import SharedStats
from servescope import metrics as contract
from servescope import settings
from servescope.repository import CONFIG_FILE, ModelEntry, RepositoryError, list_models

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# --max-inflight auto: what the served models can hold (each model's queue, or UNBOUNDED_QUEUE_ALLOWANCE
# requests where its queue is unbounded, plus a full batch per instance), plus INFLIGHT_SLACK for calls
# being decoded or answered: the models' queue policy decides first, the cap only bounds the rest.
UNBOUNDED_QUEUE_ALLOWANCE = 1024
INFLIGHT_SLACK = 64


@dataclass(frozen=True)
class ServerOptions:
    """Everything `servescope serve` can be told. None means "as config.pbtxt says"."""

    model_repository: Path
    models: tuple[str, ...] = ()
    host: str = "0.0.0.0"
    metrics_host: str | None = None  # where the metrics HTTP port listens; None: as `host`
    grpc_port: int = 8001
    http_port: int | None = 8000  # KServe v2 REST; None: not served
    metrics_port: int | None = 8002
    device: str = "auto"
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None
    batching: bool = True
    adaptive_delay: bool = True
    max_queue_size: int | None = None
    queue_timeout_us: int | None = None  # None: config.pbtxt's default_queue_policy; 0: no timeout
    instances: int | None = None
    intra_op_threads: int = 0
    grace_period_s: float = 30.0
    ready_file: Path | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # require client certificates signed by this CA (mutual TLS)
    # Inference calls in flight per worker before shedding; None: auto (auto_max_inflight); 0: no cap.
    max_inflight: int | None = None
    stream_max_inflight: int = DEFAULT_STREAM_MAX_INFLIGHT  # requests of one stream read and not answered
    extra_grpc_options: tuple[tuple[str, int], ...] = field(default=())
    # Restricted endpoint groups (server/restricted.py): --grpc-restricted-protocol, --http-restricted-api.
    grpc_restricted: tuple[Restriction, ...] = ()
    http_restricted: tuple[Restriction, ...] = ()
    # Several worker processes (server/supervisor.py): their count, and each worker's own part. A
    # worker shares the gRPC port (SO_REUSEPORT), serves no metrics port (metrics_port None: the
    # supervisor serves the whole server's) and shares its statistics through shared_dir.
    workers: int = 1
    worker_index: int = 0
    reuse_port: bool = False
    shared_dir: Path | None = None


# The settings that override a config.pbtxt field as they are (instances: a sum over instance groups).
_OVERRIDES = (
    settings.MAX_BATCH_SIZE,
    settings.MAX_QUEUE_DELAY_US,
    settings.MAX_QUEUE_SIZE,
    settings.QUEUE_TIMEOUT_US,
)


def _check_config(entry: ModelEntry) -> None:
    """Refuse config.pbtxt values the server cannot run with, naming the file and the field."""
    config, path = entry.config, entry.path / CONFIG_FILE
    dynamic = config.dynamic_batching
    instances = [group.count for group in config.instance_group]
    most = settings.INSTANCES.high
    checks = [
        *((s.config_field, _config_value(config, s), s.low or 0, s.high) for s in _OVERRIDES),
        *((f"instance_group[{i}].count", count, 0, most) for i, count in enumerate(instances)),
        ("instance_group counts in all", sum(instances), 0, most),
        *(("dynamic_batching.preferred_batch_size", size, 1, None) for size in dynamic.preferred_batch_size),
    ]  # fmt: skip
    for field_name, value, low, high in checks:
        if value < low or (high is not None and value > high):
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise RepositoryError(f"{path}: {field_name} {value} is outside {allowed}")
    policy = dynamic.default_queue_policy
    if policy.timeout_action != policy.REJECT and (policy.default_timeout_microseconds or
                                                   policy.allow_timeout_override):  # fmt: skip
        raise RepositoryError(
            f"{path}: dynamic_batching.default_queue_policy.timeout_action DELAY is not supported "
            "(REJECT only: a request past its queue timeout is refused, never run late)"
        )


def auto_max_inflight(settings: list[BatchSettings]) -> int:
    """--max-inflight auto for the served models' batch settings (see UNBOUNDED_QUEUE_ALLOWANCE)."""
    held = sum(
        (s.max_queue_size or UNBOUNDED_QUEUE_ALLOWANCE) + s.max_batch_size * s.max_concurrent_batches
        for s in settings
    )
    return held + INFLIGHT_SLACK


def _config_value(config: Any, setting: settings.Setting) -> int:
    """The config.pbtxt value a setting overrides (its config_field, a dotted path)."""
    value = config
    for part in setting.config_field.split("."):
        value = getattr(value, part)
    return int(value)


def _merged(config: Any, options: ServerOptions, setting: settings.Setting) -> int:
    """A setting's command-line value, else the config.pbtxt one."""
    given = getattr(options, setting.name)
    return _config_value(config, setting) if given is None else int(given)


def batch_settings(entry: ModelEntry, options: ServerOptions) -> BatchSettings:
    """A model's batching settings: config.pbtxt (checked, naming the file), then the command-line
    overrides (None: as config.pbtxt says)."""
    _check_config(entry)
    config = entry.config
    merged = {s.name: _merged(config, options, s) for s in _OVERRIDES}
    max_batch_size = merged["max_batch_size"]
    dynamic = config.dynamic_batching
    instances = options.instances or sum(group.count for group in config.instance_group) or 1
    preferred = tuple(sorted({int(s) for s in dynamic.preferred_batch_size if 0 < s <= max_batch_size}))
    has_batcher = config.HasField("dynamic_batching")
    batching = options.batching and (has_batcher or options.max_queue_delay_us is not None)
    return BatchSettings(
        max_batch_size=max_batch_size,
        max_queue_delay_us=merged["max_queue_delay_us"],
        preferred_batch_sizes=preferred,
        max_queue_size=merged["max_queue_size"],
        max_concurrent_batches=instances,
        batching=batching,
        adaptive_delay=options.adaptive_delay,
        queue_timeout_us=merged["queue_timeout_us"],
        allow_timeout_override=bool(dynamic.default_queue_policy.allow_timeout_override),
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


class Server:
    """One servescope worker: models, and its front ends (gRPC with health and reflection, REST, metrics
    HTTP) over one FrontDoor (frontend.py)."""

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
        # Auto: set once the models are loaded (no inference call is admitted before that).
        self.admission = Admission(
            options.max_inflight or 0, self.metrics[contract.CALLS_SHED].labels(worker=worker).inc
        )
        self._monitor = LoopMonitor(
            self.metrics[contract.EVENT_LOOP_LAG].labels(worker=worker),
            self.metrics[contract.WORKER_CPU].labels(worker=worker),
            contract.LOOP_TICK_S,
        )
        self.grpc_port = 0
        self.http_port: int | None = None
        self.metrics_port = 0
        self._live = False
        self.door = FrontDoor(
            self.core,
            self.admission,
            lambda: self._live,
            {
                GrpcFrontEnd.name: Restrictions(options.grpc_restricted, "--grpc-restricted-protocol"),
                RestFrontEnd.name: Restrictions(options.http_restricted, "--http-restricted-api"),
            },
        )
        self._grpc, self._rest, self._http = self._front_ends()
        self._stopped = False

    def _front_ends(self) -> tuple[GrpcFrontEnd, RestFrontEnd | None, MetricsHttpServer | None]:
        options = self.options
        grpc_front = GrpcFrontEnd(
            self.door,
            GrpcSettings(
                options.host, options.grpc_port, options.max_message_bytes, options.stream_max_inflight,
                options.reuse_port, options.tls_cert, options.tls_key, options.tls_client_ca,
                options.extra_grpc_options,
            ),
        )  # fmt: skip
        rest = None
        if options.http_port is not None:
            tls = (options.tls_cert, options.tls_key) if options.tls_cert and options.tls_key else None
            rest = RestFrontEnd(
                self.door, options.host, options.http_port, options.max_message_bytes,
                reuse_port=options.reuse_port, tls=tls,
            )  # fmt: skip
        http = None
        if options.metrics_port is not None:
            http = MetricsHttpServer(
                self.registry, lambda: self._live, lambda: self.core.ready,
                options.metrics_host or options.host, options.metrics_port,
            )  # fmt: skip
        return grpc_front, rest, http

    @property
    def front_ends(self) -> list[FrontEnd]:
        """Every front end, in the order they start and stop."""
        return [front for front in (self._grpc, self._rest, self._http) if front is not None]

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

    async def _listen(self) -> None:
        """Start every front end, noting the ports."""
        options = self.options
        for front in self.front_ends:
            port = await front.start()
            if front is self._grpc:
                self.grpc_port = port
            elif front is self._rest:
                self.http_port = port
            else:
                self.metrics_port = port
        log.info("listening: gRPC %s:%d, REST %s, metrics %s", options.host, self.grpc_port,
                 f"{options.host}:{self.http_port}" if self.http_port is not None else "off",
                 f"http://{options.metrics_host or options.host}:{self.metrics_port}/metrics"
                 if self.metrics_port else "through the supervisor")  # fmt: skip

    async def start(self) -> tuple[int, int]:
        """Listen, load and warm up every model, then turn ready; returns (grpc_port, metrics_port).

        A worker of several (reuse_port) listens only once it is ready: the kernel deals new
        connections to every socket listening on the shared port, and one dealt to a worker still
        loading would get "not ready" while the other workers could serve it (the supervisor answers
        the probes meanwhile). A single server listens first, so that it is live while it loads.
        """
        options = self.options
        entries = self._select()
        self.core.loading.update(entry.name for entry in entries)
        listen_first = not options.reuse_port
        try:
            if listen_first:
                await self._listen()
            self._monitor.start()
            self._live = True
            await self._load(entries)
            if self._before_ready is not None:
                await self._before_ready()
            self.core.ready = True
            if not listen_first:
                await self._listen()
        except BaseException:
            await self._abort_start()
            raise
        await self._grpc.set_serving(True)
        if options.ready_file is not None:
            write_ready_file(options.ready_file, self.grpc_port, self.metrics_port, self.http_port)
        if self.shared is not None:
            self.shared.start(lambda: [served.stats for served in self.core.models.values()])
        log.info("ready: %d model(s) loaded and warmed up", len(self.core.models))
        return self.grpc_port, self.metrics_port

    async def _load(self, entries: list[ModelEntry]) -> None:
        options = self.options
        loop = asyncio.get_running_loop()
        loaded: list[BatchSettings] = []
        if options.device == "auto" and await loop.run_in_executor(None, gpu_count) == 0:
            log.info("device auto: NVML finds no GPU, running on %s", CPU)
        for entry in entries:
            settings = batch_settings(entry, options)
            runtime = RuntimeOptions(
                options.device, options.intra_op_threads, settings.max_concurrent_batches, options.workers
            )
            runner = await loop.run_in_executor(None, ModelRunner, entry, None, runtime)
            warm_sizes = {1, settings.max_batch_size, *settings.preferred_batch_sizes}
            await loop.run_in_executor(None, runner.warm_up, sorted(warm_sizes))
            self.core.add_model(runner, settings)
            loaded.append(settings)
            log.info(
                "model %s version %s on %s: max_batch_size %d, batching %s, delay %d us, preferred %s, "
                "max_queue_size %d, queue timeout %s, instances %d",
                entry.name, runner.version, runner.provider, settings.max_batch_size,
                "on" if settings.batching else "off", settings.max_queue_delay_us,
                list(settings.preferred_batch_sizes), settings.max_queue_size,
                f"{settings.queue_timeout_us} us" if settings.queue_timeout_us else "none",
                settings.max_concurrent_batches,
            )  # fmt: skip
        if options.max_inflight is None:
            self.admission.max_inflight = auto_max_inflight(loaded)
        log.info("in-flight cap: %s inference calls per worker (--max-inflight)",
                 self.admission.max_inflight if options.max_inflight != 0 else "none")  # fmt: skip

    async def _abort_start(self) -> None:
        """Release the ports and the models loaded so far after a failed start."""
        self._stopped = True
        for front in self.front_ends:
            await front.stop()
        self._live = False
        await self._monitor.stop()
        await self.core.close()

    async def stop(self, grace_s: float | None = None) -> bool:
        """Drain, then stop (docs/server.md, Reliability): not ready, new calls UNAVAILABLE, streams stop
        reading and end once their answers are written, accepted calls finish (up to grace_s); then each
        front end's last phase (gRPC: the last calls are held while its shutdown tells the clients to go
        away, and answered UNAVAILABLE), and the front ends stop.

        Every call sent after this starts gets UNAVAILABLE or its answer, never a bare CANCELLED, as long
        as the accepted ones finish within the grace period. Returns True when they all did.
        """
        if self._stopped:
            return True
        self._stopped = True
        grace_s = self.options.grace_period_s if grace_s is None else grace_s
        started_s = time.monotonic()

        def left_s() -> float:
            return max(0.0, grace_s - (time.monotonic() - started_s))

        self.core.draining = True
        self.core.ready = False
        self.admission.refuse_streams()
        await self._grpc.begin_drain()
        drained = await self.core.drain(grace_s)
        drained = await self.admission.streams_closed(left_s()) and drained
        if not drained:
            log.warning("grace period of %.1f s over with requests still running", grace_s)
        serving = [front for front in self.front_ends if front is not self._http]
        for front in serving:
            await front.drain(left_s)
        for front in serving:
            await front.stop()
        self._live = False
        await self._monitor.stop()
        if self.shared is not None:
            await self.shared.stop([served.stats for served in self.core.models.values()])
        if self._http is not None:
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
