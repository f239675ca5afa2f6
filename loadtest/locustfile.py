"""The Locust side of servescope: KServe v2 gRPC users, closed and open loop, streaming per-request samples.

Run only as a Locust locustfile in its own process (`python -m locust -f loadtest/locustfile.py ...`),
never imported by the campaign driver: Locust monkey-patches the process with gevent. The driver
passes one JSON object with `--servescope-config` (Locust forwards it from a master to its workers):

    target, model, batch_size, payload ("auto"|"tokens"|"random"), seed, samples_dir, timeout_s,
    mode ("closed"|"open"), rate_rps (total, open loop), users (open loop: users sharing the rate),
    arrival ("constant"|"poisson"), max_inflight (open loop, per user), value_ranges ({input: [min, max]}),
    connections (gRPC connections per Locust process),
    ramp (optional list of {"until_s", "users", "rate_rps"}: the step shape, see shape_steps.py)

Every request fires exactly one Locust request event (perf_counter timing, milliseconds) and appends
one record to samples-<host>-<pid>.bin in samples_dir (see samples.py); failures carry their gRPC
status code name in `exception=`. status-<host>-<pid>.json records the generator's own health:
Locust's CPU warning, the highest CPU use it reported, and open-loop arrivals sent late or dropped.
"""

from __future__ import annotations

# gRPC must cooperate with gevent before any channel exists (ECOSYSTEM-FACTS.md).
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import gevent.lock  # noqa: E402
import gevent.pool  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402
from locust import User, constant, events, task  # noqa: E402

from loadtest.payload import build_requests, inputs_from_metadata  # noqa: E402
from loadtest.samples import (  # noqa: E402
    CODE_CLIENT_DROPPED,
    CODE_CLIENT_ERROR,
    CODE_OK,
    SAMPLE_DTYPE,
    code_name,
)
from servescope.protocol import grpc_service_pb2 as pb  # noqa: E402
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc  # noqa: E402

FLUSH_INTERVAL_S = 0.2
PAYLOAD_POOL = 64  # distinct requests per process, cycled
RETRY_S = 0.2  # retry interval (ModelMetadata, closed-loop calls) while the server cannot be reached
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
LATE_THRESHOLD_S = 0.005  # an open-loop arrival issued later than this behind schedule counts as late


class GrpcStatusError(Exception):
    """A failed call; str() is the status code name so that Locust groups failures by code."""

    def __init__(self, code_name: str, details: str = "") -> None:
        super().__init__(code_name)
        self.details = details


class _Process:
    """What one Locust process shares between its users: channel, payloads, sample buffer, health."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.stub: pb_grpc.GRPCInferenceServiceStub | None = None  # for ModelMetadata
        self.stubs: list[pb_grpc.GRPCInferenceServiceStub] = []  # one per connection
        self.users = 0
        self.requests: list[pb.ModelInferRequest] = []
        self.next_request = 0
        self.buffer: list[tuple[float, float, int, int]] = []
        self.lock = gevent.lock.Semaphore()
        self.ready = False
        self.samples_path: Path | None = None
        self.status_path: Path | None = None
        self.status: dict[str, Any] = {
            "pid": os.getpid(),
            "cpu_warning": False,
            "cpu_warning_times": [],
            "max_cpu_percent": 0.0,
            "request_bytes": None,
            "late": 0,
            "dropped": 0,
            "setup_error": None,
        }
        self.flusher: gevent.Greenlet | None = None
        self.test_start_s = time.time()
        self.retry_at = 0.0
        self.setup_code = CODE_CLIENT_ERROR

    def setup(self, environment: Any) -> None:
        """Once per process: read the config, open the channel, ask ModelMetadata, build payloads."""
        with self.lock:
            if self.ready:
                return
            self.config = json.loads(environment.parsed_options.servescope_config)
            missing = [k for k in ("target", "model", "samples_dir") if not self.config.get(k)]
            if missing:
                raise ValueError(f"--servescope-config: {missing} missing (see loadtest/locustfile.py)")
            self.test_start_s = time.time()
            folder = Path(self.config["samples_dir"])
            folder.mkdir(parents=True, exist_ok=True)
            tag = f"{socket.gethostname()}-{os.getpid()}"
            self.samples_path = folder / f"samples-{tag}.bin"
            self.status_path = folder / f"status-{tag}.json"
            # Several connections: a server whose workers share a port is balanced by connection. A
            # subchannel pool of its own makes each channel its own TCP connection.
            options = [
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
                ("grpc.use_local_subchannel_pool", 1),
            ]
            self.stubs = [
                pb_grpc.GRPCInferenceServiceStub(
                    grpc.insecure_channel(self.config["target"], options=options)
                )
                for _ in range(max(1, int(self.config.get("connections", 1))))
            ]
            self.stub = self.stubs[0]
            self.ready = True
            self.flusher = gevent.spawn(self._flush_forever)
        self.build_payloads()

    def build_payloads(self) -> int | None:
        """Ask ModelMetadata and build the payloads; on failure return the status code to record.

        Retried (at most every RETRY_S) until it works, so a server that comes back is used again.
        """
        if self.requests:
            return None
        with self.lock:
            if self.requests:
                return None
            if time.monotonic() < self.retry_at:
                return self.setup_code
            model = self.config["model"]
            try:
                metadata = self.stub.ModelMetadata(
                    pb.ModelMetadataRequest(name=model), timeout=self.config.get("timeout_s", 30.0)
                )
                self.requests = build_requests(
                    model,
                    inputs_from_metadata(metadata),
                    batch_size=int(self.config.get("batch_size", 1)),
                    count=PAYLOAD_POOL,
                    seed=int(self.config.get("seed", 0)) + os.getpid(),
                    kind=self.config.get("payload", "auto"),
                    ranges={
                        name: tuple(bounds)
                        for name, bounds in (self.config.get("value_ranges") or {}).items()
                    },
                )
                self.status["request_bytes"] = sum(len(raw) for raw in self.requests[0].raw_input_contents)
                self.status["setup_error"] = None
                return None
            except Exception as exc:  # recorded with its code; the driver reports the message
                if isinstance(exc, grpc.RpcError):
                    self.setup_code = exc.code().value[0]
                    detail = f"{exc.code().name}: {exc.details()}"
                else:
                    self.setup_code = CODE_CLIENT_ERROR
                    detail = f"{type(exc).__name__}: {exc}"
                self.status["setup_error"] = f"ModelMetadata for {model!r} failed: {detail}"
                self.retry_at = time.monotonic() + RETRY_S
                self.write_status()
                return self.setup_code

    def next_stub(self) -> pb_grpc.GRPCInferenceServiceStub:
        """The connection for a new user: users are dealt over the connections in turn."""
        stub = self.stubs[self.users % len(self.stubs)]
        self.users += 1
        return stub

    def take_request(self) -> pb.ModelInferRequest | None:
        if not self.requests:
            return None
        request = self.requests[self.next_request % len(self.requests)]
        self.next_request += 1
        return request

    def record(self, end_s: float, latency_s: float, code: int, batch: int, delay_s: float) -> None:
        self.buffer.append((end_s, latency_s, code, batch, delay_s))

    def flush(self) -> None:
        if self.samples_path is None:
            return
        chunk, self.buffer = self.buffer, []
        if chunk:
            with self.samples_path.open("ab") as f:
                f.write(np.array(chunk, dtype=SAMPLE_DTYPE).tobytes())
        self.write_status()

    def write_status(self) -> None:
        if self.status_path is None:
            return
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status))
        tmp.replace(self.status_path)

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()


PROCESS = _Process()


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument(
        "--servescope-config", type=str, default="{}", help="servescope load configuration (JSON)"
    )


@events.cpu_warning.add_listener
def _on_cpu_warning(environment: Any, cpu_usage: float, **_kwargs: Any) -> None:
    PROCESS.status["cpu_warning"] = True
    PROCESS.status["cpu_warning_times"].append(time.time())


@events.usage_monitor.add_listener
def _on_usage(environment: Any, cpu_usage: float, memory_usage: int, **_kwargs: Any) -> None:
    PROCESS.status["max_cpu_percent"] = max(PROCESS.status["max_cpu_percent"], float(cpu_usage))


@events.test_stop.add_listener
def _on_test_stop(**_kwargs: Any) -> None:
    PROCESS.flush()
    dropped = PROCESS.status["dropped"]
    if dropped:
        logging.getLogger("servescope.locust").warning(
            "%d open-loop arrivals were dropped (in-flight cap reached) and not sent", dropped
        )


@events.quitting.add_listener
def _on_quitting(**_kwargs: Any) -> None:
    PROCESS.flush()


def _current_target(config: dict[str, Any], key: str, default: float) -> float:
    """The value of `key` now, following the ramp (step shape) when there is one."""
    ramp = config.get("ramp") or []
    elapsed = time.time() - PROCESS.test_start_s
    for step in ramp:
        if elapsed < step["until_s"]:
            return float(step[key])
    return float(ramp[-1][key]) if ramp else default


class _KServeUser(User):
    """Holds only its connection: channels and payloads are per process, users are dealt over the
    process's connections (HTTP/2 multiplexes the users of one connection)."""

    abstract = True

    def on_start(self) -> None:
        PROCESS.setup(self.environment)
        self.stub = PROCESS.next_stub()
        self.last_end_s: float | None = None

    def call(self, scheduled_s: float | None = None) -> int:
        """One ModelInfer call, timed with perf_counter, reported once to Locust and once to samples.

        The sample also records the generator's own delay before the call: how late it left against
        `scheduled_s` (open loop), or how long after this user's previous answer (closed loop).
        """
        setup_code = PROCESS.build_payloads()
        request = PROCESS.take_request()
        model = PROCESS.config.get("model", "?")
        batch = int(PROCESS.config.get("batch_size", 1))
        timeout_s = float(PROCESS.config.get("timeout_s", 30.0))
        exception: Exception | None = None
        length = 0
        started = time.perf_counter()
        since = scheduled_s if scheduled_s is not None else self.last_end_s
        delay_s = max(0.0, started - since) if since is not None else float("nan")
        if request is None:
            code = CODE_CLIENT_ERROR if setup_code is None else setup_code
            exception = GrpcStatusError(code_name(code), PROCESS.status["setup_error"] or "no payload")
        else:
            try:
                response = self.stub.ModelInfer(request, timeout=timeout_s)
                length = sum(len(c) for c in response.raw_output_contents)
                code = CODE_OK
            except grpc.RpcError as exc:
                code = exc.code().value[0]
                exception = GrpcStatusError(exc.code().name, exc.details() or "")
        self.last_end_s = time.perf_counter()
        latency_s = self.last_end_s - started
        PROCESS.record(time.time(), latency_s, code, batch, delay_s)
        self.environment.events.request.fire(
            request_type="grpc",
            name=model,
            response_time=latency_s * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )
        return code


class ClosedLoopUser(_KServeUser):
    """Closed loop: each user sends its next request as soon as the previous answer arrives."""

    wait_time = constant(0)

    @task
    def infer(self) -> None:
        code = self.call()
        if code == UNAVAILABLE or not PROCESS.requests:
            # The server or the model is unreachable: pause instead of spinning, which would only count
            # failures as fast as this process can and starve the other users of CPU.
            gevent.sleep(RETRY_S)


class OpenLoopUser(_KServeUser):
    """Open loop: requests are issued on an arrival schedule, whether or not earlier ones returned.

    The total rate is split evenly over the open-loop users (one per worker process). Each arrival is
    a new greenlet; when `max_inflight` calls of this user are outstanding the arrival is dropped and
    recorded as CLIENT_DROPPED in the samples and the status file (never as a Locust request: it was not
    sent), so a collapsing server shows up as drops instead of silently slowing the offered load down
    (which would turn the test back into a closed loop). Locust's log says how many at the end.
    """

    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        self.pool = gevent.pool.Pool()
        self.rng = np.random.default_rng(int(PROCESS.config.get("seed", 0)) + os.getpid() + id(self) % 1000)

    def on_stop(self) -> None:
        self.pool.kill(block=False)

    @task
    def arrivals(self) -> None:
        config = PROCESS.config
        users = max(1, int(config.get("users", 1)))
        cap = int(config.get("max_inflight", 1000))
        poisson = config.get("arrival", "constant") == "poisson"
        next_s = time.perf_counter()
        while True:
            rate = _current_target(config, "rate_rps", float(config.get("rate_rps", 1.0))) / users
            interval = self.rng.exponential(1.0 / rate) if poisson else 1.0 / rate
            next_s += interval
            delay = next_s - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            elif -delay > LATE_THRESHOLD_S:
                PROCESS.status["late"] += 1
            if len(self.pool) >= cap:
                # Not sent, so not a request: no Locust request event (a response time of 0 would pull
                # Locust's percentiles down). Counted in the status file and recorded as CLIENT_DROPPED.
                PROCESS.status["dropped"] += 1
                batch = int(config.get("batch_size", 1))
                PROCESS.record(time.time(), 0.0, CODE_CLIENT_DROPPED, batch, float("nan"))
                continue
            self.pool.spawn(self.call, next_s)
