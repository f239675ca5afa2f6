"""What one Locust process shares between its users: config, payloads, the sample buffer and its health.

The transport-specific parts (channels, the model's metadata, request bodies) come from the user's
transport side (grpc.py, http.py: `open`, `model_inputs`, `prepare`), so this module knows none.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
from pathlib import Path
from typing import Any, Protocol

import gevent
import gevent.lock
import grpc
import numpy as np

from loadtest.connection import Connection
from loadtest.input_data import batches, read_input_data, sample_arrays
from loadtest.payload import build_requests, requests_from_tensors
from loadtest.samples import CODE_CLIENT_ERROR, SAMPLE_DTYPE, code_name, code_of
from servescope.protocol import grpc_service_pb2 as pb
from servescope.status import grpc_name_of_http

FLUSH_INTERVAL_S = 0.2
PAYLOAD_POOL = 64  # distinct requests per process, cycled
RETRY_S = 0.2  # retry interval (ModelMetadata, closed-loop calls) while the server cannot be reached
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


class GrpcStatusError(Exception):
    """A failed call; str() is the status code name so that Locust groups failures by code."""

    def __init__(self, code_name: str, details: str = "") -> None:
        super().__init__(code_name)
        self.details = details


class Side(Protocol):
    """A transport's process-wide part (a user class of grpc.py or http.py)."""

    @classmethod
    def open(cls, process: Process) -> None: ...

    @classmethod
    def model_inputs(cls, process: Process, model: str) -> list[Any]: ...

    @classmethod
    def prepare(cls, process: Process, requests: list[pb.ModelInferRequest]) -> None: ...


class Process:
    """One per Locust process (PROCESS below)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.connection = Connection()
        self.transport: dict[str, Any] = {}  # the transport side's own state (stubs, bodies, ...)
        self.requests: list[pb.ModelInferRequest] = []
        self.streams: set[Any] = set()  # open streams (grpc_stream.py), closed at test stop
        self.next_request = 0
        self.buffer: list[tuple[float, float, int, int, float]] = []
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

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def batch_size(self) -> int:
        return int(self.config.get("batch_size", 1))

    @property
    def timeout_s(self) -> float:
        return float(self.config.get("timeout_s", 30.0))

    def read_config(self, environment: Any) -> dict[str, Any]:
        if not self.config:
            config = json.loads(environment.parsed_options.servescope_config)
            missing = [k for k in ("target", "model", "samples_dir") if not config.get(k)]
            if missing:
                raise ValueError(f"--servescope-config: {missing} missing (see loadtest/locustfile.py)")
            self.connection = Connection.from_config(config)
            self.config = config
        return self.config

    def setup(self, environment: Any, side: type[Side]) -> None:
        """Once per process: read the config, open the transport, ask ModelMetadata, build payloads."""
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
            side.open(self)
            self.ready = True
            self.flusher = gevent.spawn(self._flush_forever)
        self.build_payloads(side)

    def build_payloads(self, side: type[Side]) -> int | None:
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
            try:
                requests = self._requests(side.model_inputs(self, self.model))
                side.prepare(self, requests)
                self.requests = requests
                self.status["request_bytes"] = sum(len(raw) for raw in requests[0].raw_input_contents)
                self.status["setup_error"] = None
                return None
            except Exception as exc:  # recorded with its code; the driver reports the message
                self.setup_code, detail = _setup_failure(exc)
                self.status["setup_error"] = f"ModelMetadata for {self.model!r} failed: {detail}"
                self.retry_at = time.monotonic() + RETRY_S
                self.write_status()
                return self.setup_code

    def _requests(self, inputs: list[Any]) -> list[pb.ModelInferRequest]:
        version = self.connection.model_version
        if self.config.get("input_data"):
            samples = sample_arrays(read_input_data(self.config["input_data"]), inputs, self.model)
            return requests_from_tensors(self.model, inputs, batches(samples, self.batch_size), version)
        return build_requests(
            self.model,
            inputs,
            batch_size=self.batch_size,
            count=PAYLOAD_POOL,
            seed=int(self.config.get("seed", 0)) + os.getpid(),
            kind=self.config.get("payload", "auto"),
            ranges={name: tuple(bounds) for name, bounds in (self.config.get("value_ranges") or {}).items()},
            version=version,
        )

    def take_index(self) -> int | None:
        """The next payload's index (payloads are cycled), or None when there are none yet."""
        if not self.requests:
            return None
        index = self.next_request % len(self.requests)
        self.next_request += 1
        return index

    def no_payload(self, setup_code: int | None) -> tuple[int, GrpcStatusError]:
        code = CODE_CLIENT_ERROR if setup_code is None else setup_code
        return code, GrpcStatusError(code_name(code), self.status["setup_error"] or "no payload")

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


def _setup_failure(exc: Exception) -> tuple[int, str]:
    """The status code to record for a failed ModelMetadata, and what to say."""
    if isinstance(exc, grpc.RpcError):
        return exc.code().value[0], f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, urllib.error.HTTPError):
        return code_of(grpc_name_of_http(exc.code)), f"HTTP {exc.code}: {_http_error_message(exc)}"
    if isinstance(exc, urllib.error.URLError | OSError):
        return UNAVAILABLE, f"{type(exc).__name__}: {exc}"
    return CODE_CLIENT_ERROR, f"{type(exc).__name__}: {exc}"


def _http_error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"])
    except Exception:
        return exc.reason or ""


def delay_since(started: float, since: float | None) -> float:
    """The generator's own delay before a call (servescope.results.ClientTiming): NaN when unknown."""
    return max(0.0, started - since) if since is not None else float("nan")


PROCESS = Process()
