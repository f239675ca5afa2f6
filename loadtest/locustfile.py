"""The Locust side of servescope: KServe v2 users over gRPC (unary or streaming) and REST, closed and open
loop, streaming per-request samples.

Run only as a Locust locustfile in its own process (`python -m locust -f loadtest/locustfile.py ...`),
never imported by the campaign driver: Locust monkey-patches the process with gevent. The driver
passes one JSON object with `--servescope-config` (Locust forwards it from a master to its workers):

    target, model, batch_size, payload ("auto"|"tokens"|"random"), seed, samples_dir, timeout_s,
    mode ("closed"|"open"), rate_rps (total, open loop), users (open loop: users sharing the rate),
    arrival ("constant"|"poisson"), max_inflight (open loop, per user), value_ranges ({input: [min, max]}),
    connections (gRPC connections per Locust process),
    ramp (optional list of {"until_s", "users", "rate_rps"}: the step shape, see shape_steps.py),
    protocol ("grpc"|"http"), streaming (gRPC: one ModelStreamInfer stream per user), tls_ca, tls_cert,
    tls_key, model_version, headers ({name: value}, gRPC metadata or HTTP headers),
    input_data (perf_analyzer JSON input file, see input_data.py)

gRPC users are ClosedLoopUser and OpenLoopUser; REST users, on Locust's FastHttpUser (one HTTP/1.1
keep-alive connection per request in flight), HttpClosedLoopUser and HttpOpenLoopUser. REST bodies use
the binary tensor extension, built once per payload.

Every request fires exactly one Locust request event (perf_counter timing, milliseconds) and appends
one record to samples-<host>-<pid>.bin in samples_dir (see samples.py); failures carry their gRPC
status code name in `exception=` (an HTTP status is recorded as the gRPC code the server gives for the
same failure, servescope.status; an in-band streaming error as UNKNOWN). status-<host>-<pid>.json
records the generator's own health: Locust's CPU warning, the highest CPU use it reported, and
open-loop arrivals sent late or dropped.
"""

from __future__ import annotations

# gRPC must cooperate with gevent before any channel exists (ECOSYSTEM-FACTS.md).
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402
import gevent.pool  # noqa: E402
import gevent.queue  # noqa: E402
import gevent.ssl  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402
from locust import User, constant, events, task  # noqa: E402
from locust.contrib.fasthttp import FastHttpUser  # noqa: E402

from loadtest.connection import Connection  # noqa: E402
from loadtest.input_data import batches, read_input_data, sample_arrays  # noqa: E402
from loadtest.payload import (  # noqa: E402
    build_requests,
    inputs_from_metadata,
    inputs_from_rest_metadata,
    requests_from_tensors,
    rest_body,
)
from loadtest.samples import (  # noqa: E402
    CODE_CLIENT_DROPPED,
    CODE_CLIENT_ERROR,
    CODE_OK,
    SAMPLE_DTYPE,
    code_name,
    code_of,
)
from servescope.protocol import grpc_service_pb2 as pb  # noqa: E402
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
from servescope.status import grpc_name_of_http  # noqa: E402

FLUSH_INTERVAL_S = 0.2
PAYLOAD_POOL = 64  # distinct requests per process, cycled
RETRY_S = 0.2  # retry interval (ModelMetadata, closed-loop calls) while the server cannot be reached
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
STREAM_ERROR = grpc.StatusCode.UNKNOWN.value[0]  # an in-band ModelStreamInfer error carries no code
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
        self.connection = Connection()
        self.stub: pb_grpc.GRPCInferenceServiceStub | None = None  # for ModelMetadata
        self.stubs: list[pb_grpc.GRPCInferenceServiceStub] = []  # one per connection
        self.users = 0
        self.requests: list[pb.ModelInferRequest] = []
        self.bodies: list[tuple[bytes, dict[str, str]]] = []  # REST: (body, headers) per request
        self.streams: set[Any] = set()  # open ModelStreamInfer streams (_Stream), closed at test stop
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

    def read_config(self, environment: Any) -> dict[str, Any]:
        if not self.config:
            config = json.loads(environment.parsed_options.servescope_config)
            missing = [k for k in ("target", "model", "samples_dir") if not config.get(k)]
            if missing:
                raise ValueError(f"--servescope-config: {missing} missing (see loadtest/locustfile.py)")
            self.connection = Connection.from_config(config)
            self.config = config
        return self.config

    def setup(self, environment: Any) -> None:
        """Once per process: read the config, open the channels, ask ModelMetadata, build payloads."""
        with self.lock:
            if self.ready:
                return
            self.read_config(environment)
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
            if self.connection.protocol == "grpc":
                self.stubs = [
                    pb_grpc.GRPCInferenceServiceStub(
                        self.connection.grpc_channel(self.config["target"], options=options)
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
                inputs = self.model_inputs(model)
                batch_size = int(self.config.get("batch_size", 1))
                version = self.connection.model_version
                if self.config.get("input_data"):
                    samples = sample_arrays(read_input_data(self.config["input_data"]), inputs, model)
                    requests = requests_from_tensors(model, inputs, batches(samples, batch_size), version)
                else:
                    requests = build_requests(
                        model,
                        inputs,
                        batch_size=batch_size,
                        count=PAYLOAD_POOL,
                        seed=int(self.config.get("seed", 0)) + os.getpid(),
                        kind=self.config.get("payload", "auto"),
                        ranges={
                            name: tuple(bounds)
                            for name, bounds in (self.config.get("value_ranges") or {}).items()
                        },
                        version=version,
                    )
                if self.connection.protocol == "http":
                    self.bodies = [self._http_body(request) for request in requests]
                self.requests = requests
                self.status["request_bytes"] = sum(len(raw) for raw in requests[0].raw_input_contents)
                self.status["setup_error"] = None
                return None
            except Exception as exc:  # recorded with its code; the driver reports the message
                if isinstance(exc, grpc.RpcError):
                    self.setup_code = exc.code().value[0]
                    detail = f"{exc.code().name}: {exc.details()}"
                elif isinstance(exc, urllib.error.HTTPError):
                    self.setup_code = code_of(grpc_name_of_http(exc.code))
                    detail = f"HTTP {exc.code}: {_http_error_message(exc)}"
                elif isinstance(exc, urllib.error.URLError | OSError):
                    self.setup_code = UNAVAILABLE
                    detail = f"{type(exc).__name__}: {exc}"
                else:
                    self.setup_code = CODE_CLIENT_ERROR
                    detail = f"{type(exc).__name__}: {exc}"
                self.status["setup_error"] = f"ModelMetadata for {model!r} failed: {detail}"
                self.retry_at = time.monotonic() + RETRY_S
                self.write_status()
                return self.setup_code

    def model_inputs(self, model: str) -> list[Any]:
        """The model's inputs, asked with ModelMetadata over the protocol of the test."""
        connection, timeout_s = self.connection, float(self.config.get("timeout_s", 30.0))
        if connection.protocol == "grpc":
            request = pb.ModelMetadataRequest(name=model, version=connection.model_version)
            return inputs_from_metadata(
                self.stub.ModelMetadata(request, timeout=timeout_s, metadata=connection.metadata())
            )
        url = connection.base_url(self.config["target"]) + connection.model_path(model)
        request = urllib.request.Request(url, headers=dict(connection.headers))
        context = connection.ssl_context(gevent.ssl.create_default_context)
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            return inputs_from_rest_metadata(json.loads(response.read()))

    def _http_body(self, request: pb.ModelInferRequest) -> tuple[bytes, dict[str, str]]:
        body, header_length = rest_body(request)
        headers = {
            **self.connection.headers,
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        }
        return body, headers

    def take_body(self) -> tuple[bytes, dict[str, str]] | None:
        if not self.bodies:
            return None
        body = self.bodies[self.next_request % len(self.bodies)]
        self.next_request += 1
        return body

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
    for stream in list(PROCESS.streams):
        stream.close()
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


def _http_error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"])
    except Exception:
        return exc.reason or ""


def _no_payload(setup_code: int | None) -> tuple[int, GrpcStatusError]:
    code = CODE_CLIENT_ERROR if setup_code is None else setup_code
    return code, GrpcStatusError(code_name(code), PROCESS.status["setup_error"] or "no payload")


class _Stream:
    """One ModelStreamInfer stream: requests go in through a queue, a reader greenlet hands each answer
    to the call that waits for its id (answers come back as they finish, not in order)."""

    def __init__(self, stub: pb_grpc.GRPCInferenceServiceStub, metadata: tuple[tuple[str, str], ...]) -> None:
        self._outbox: gevent.queue.Queue = gevent.queue.Queue()
        self._waiting: dict[str, gevent.event.AsyncResult] = {}
        self._ids = itertools.count()
        self._prefix = f"{os.getpid()}-{id(self)}-"
        self._broken: Exception | None = None  # set once the stream has ended
        self._responses = stub.ModelStreamInfer(iter(self._outbox.get, None), metadata=metadata)
        self._reader = gevent.spawn(self._read)
        PROCESS.streams.add(self)

    def _read(self) -> None:
        try:
            for response in self._responses:
                waiter = self._waiting.pop(response.infer_response.id, None)
                if waiter is not None:
                    waiter.set(response)
        except grpc.RpcError as exc:
            failure = exc
        else:
            failure = None
        for waiter in self._waiting.values():  # the stream ended: every open call fails with its code
            waiter.set_exception(failure or GrpcStatusError("UNAVAILABLE", "the stream ended"))
        self._waiting.clear()
        self._broken = failure or GrpcStatusError("UNAVAILABLE", "the stream ended")

    def infer(self, template: pb.ModelInferRequest, timeout_s: float) -> pb.ModelInferResponse:
        """Send one request on the stream and wait for its answer; raises GrpcStatusError or RpcError."""
        if self._broken is not None:
            raise self._broken
        request = pb.ModelInferRequest()
        request.CopyFrom(template)
        request.id = self._prefix + str(next(self._ids))
        waiter = gevent.event.AsyncResult()
        self._waiting[request.id] = waiter
        self._outbox.put(request)
        try:
            response = waiter.get(timeout=timeout_s)
        except gevent.Timeout:
            self._waiting.pop(request.id, None)
            raise GrpcStatusError(
                "DEADLINE_EXCEEDED", f"no answer on the stream within {timeout_s:g} s"
            ) from None
        if response.error_message:
            raise GrpcStatusError(code_name(STREAM_ERROR), response.error_message)
        return response.infer_response

    def close(self) -> None:
        """End the stream (its request iterator, then the call), so the process can exit at once."""
        PROCESS.streams.discard(self)
        self._outbox.put(None)
        self._responses.cancel()
        self._reader.kill(block=False)


class _GrpcUser(User):
    """Holds only its connection: channels and payloads are per process, users are dealt over the
    process's connections (HTTP/2 multiplexes the users of one connection). With streaming, each user
    keeps one ModelStreamInfer stream on its connection, as perf_analyzer --streaming does."""

    abstract = True
    stream: _Stream | None = None

    def on_start(self) -> None:
        PROCESS.setup(self.environment)
        self.stub = PROCESS.next_stub()
        self.last_end_s: float | None = None
        if PROCESS.connection.streaming:
            self.stream = _Stream(self.stub, PROCESS.connection.metadata())

    def on_stop(self) -> None:
        if self.stream is not None:
            self.stream.close()

    def call(self, scheduled_s: float | None = None) -> int:
        """One inference, timed with perf_counter, reported once to Locust and once to samples.

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
            code, exception = _no_payload(setup_code)
        else:
            try:
                if self.stream is not None:
                    response = self.stream.infer(request, timeout_s)
                else:
                    response = self.stub.ModelInfer(
                        request, timeout=timeout_s, metadata=PROCESS.connection.metadata()
                    )
                length = sum(len(c) for c in response.raw_output_contents)
                code = CODE_OK
            except grpc.RpcError as exc:
                code = exc.code().value[0]
                exception = GrpcStatusError(exc.code().name, exc.details() or "")
            except GrpcStatusError as exc:
                code, exception = code_of(str(exc)), exc
        self.last_end_s = time.perf_counter()
        latency_s = self.last_end_s - started
        PROCESS.record(time.time(), latency_s, code, batch, delay_s)
        self.environment.events.request.fire(
            request_type="grpc-stream" if self.stream is not None else "grpc",
            name=model,
            response_time=latency_s * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )
        return code


class _HttpUser(FastHttpUser):
    """KServe v2 REST on Locust's FastHttpUser: the same payloads as gRPC's, sent as binary tensors.
    HTTP/1.1 carries one request at a time per connection, so a user keeps one keep-alive connection
    per request it has in flight (closed loop: one; open loop: up to max_inflight)."""

    abstract = True

    def __init__(self, environment: Any) -> None:
        config = PROCESS.read_config(environment)
        connection = PROCESS.connection
        self.host = connection.base_url(config["target"])
        self.network_timeout = self.connection_timeout = float(config.get("timeout_s", 30.0))
        self.concurrency = (
            1 if config.get("mode", "closed") == "closed" else int(config.get("max_inflight", 1000))
        )
        if connection.tls:
            self.insecure = False
            self.ssl_context_factory = lambda **_kwargs: connection.ssl_context(
                gevent.ssl.create_default_context
            )
        super().__init__(environment)

    def on_start(self) -> None:
        PROCESS.setup(self.environment)
        self.path = PROCESS.connection.model_path(PROCESS.config["model"]) + "/infer"
        self.last_end_s: float | None = None

    def call(self, scheduled_s: float | None = None) -> int:
        """One inference; FastHttpSession reports it to Locust (once), this to the samples (with the
        generator's own delay before the call, as _GrpcUser.call)."""
        setup_code = PROCESS.build_payloads()
        payload = PROCESS.take_body()
        model = PROCESS.config.get("model", "?")
        batch = int(PROCESS.config.get("batch_size", 1))
        started = time.perf_counter()
        since = scheduled_s if scheduled_s is not None else self.last_end_s
        delay_s = max(0.0, started - since) if since is not None else float("nan")
        if payload is None:
            code, exception = _no_payload(setup_code)
            PROCESS.record(time.time(), time.perf_counter() - started, code, batch, delay_s)
            self.environment.events.request.fire(
                request_type="POST", name=model, response_time=0.0, response_length=0,
                exception=exception, context={},
            )  # fmt: skip
            return code
        body, headers = payload
        with self.client.post(
            self.path, data=body, headers=headers, name=model, catch_response=True
        ) as answer:
            status = answer.status_code or 0
            if status == 200:
                code = CODE_OK
                answer.success()
            else:
                # 0: no answer at all (refused, reset, timed out on the client)
                name = grpc_name_of_http(status) if status else "UNAVAILABLE"
                if status == 0 and isinstance(answer.error, TimeoutError | gevent.Timeout):
                    name = "DEADLINE_EXCEEDED"
                code = code_of(name)
                answer.failure(GrpcStatusError(name, _answer_message(answer)))
        self.last_end_s = time.perf_counter()
        PROCESS.record(time.time(), self.last_end_s - started, code, batch, delay_s)
        return code


def _answer_message(answer: Any) -> str:
    try:
        return str(json.loads(answer.content)["error"])
    except Exception:
        return str(getattr(answer, "error", "") or "")


def _closed_loop(user: Any) -> None:
    code = user.call()
    if code == UNAVAILABLE or not PROCESS.requests:
        # The server or the model is unreachable: pause instead of spinning, which would only count
        # failures as fast as this process can and starve the other users of CPU.
        gevent.sleep(RETRY_S)


def _open_loop_start(user: Any) -> None:
    user.pool = gevent.pool.Pool()
    user.rng = np.random.default_rng(int(PROCESS.config.get("seed", 0)) + os.getpid() + id(user) % 1000)


def _arrivals(user: Any) -> None:
    """Issue arrivals on the schedule forever (see OpenLoopUser)."""
    config = PROCESS.config
    users = max(1, int(config.get("users", 1)))
    cap = int(config.get("max_inflight", 1000))
    poisson = config.get("arrival", "constant") == "poisson"
    next_s = time.perf_counter()
    while True:
        rate = _current_target(config, "rate_rps", float(config.get("rate_rps", 1.0))) / users
        interval = user.rng.exponential(1.0 / rate) if poisson else 1.0 / rate
        next_s += interval
        delay = next_s - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        elif -delay > LATE_THRESHOLD_S:
            PROCESS.status["late"] += 1
        if len(user.pool) >= cap:
            # Not sent, so not a request: no Locust request event (a response time of 0 would pull
            # Locust's percentiles down). Counted in the status file and recorded as CLIENT_DROPPED.
            PROCESS.status["dropped"] += 1
            batch = int(config.get("batch_size", 1))
            PROCESS.record(time.time(), 0.0, CODE_CLIENT_DROPPED, batch, float("nan"))
            continue
        user.pool.spawn(user.call, next_s)


class ClosedLoopUser(_GrpcUser):
    """Closed loop: each user sends its next request as soon as the previous answer arrives."""

    wait_time = constant(0)

    @task
    def infer(self) -> None:
        _closed_loop(self)


class OpenLoopUser(_GrpcUser):
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
        _open_loop_start(self)

    def on_stop(self) -> None:
        self.pool.kill(block=False)
        super().on_stop()

    @task
    def arrivals(self) -> None:
        _arrivals(self)


class HttpClosedLoopUser(_HttpUser):
    """ClosedLoopUser over KServe v2 REST."""

    wait_time = constant(0)

    @task
    def infer(self) -> None:
        _closed_loop(self)


class HttpOpenLoopUser(_HttpUser):
    """OpenLoopUser over KServe v2 REST."""

    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        _open_loop_start(self)

    def on_stop(self) -> None:
        self.pool.kill(block=False)

    @task
    def arrivals(self) -> None:
        _arrivals(self)
