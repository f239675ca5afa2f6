"""KServe v2 REST on Locust's FastHttpUser: the same payloads as gRPC's, sent as binary tensors.

HTTP/1.1 carries one request at a time per connection, so a user keeps one keep-alive connection per
request it has in flight (closed loop: one; open loop: up to max_inflight). An HTTP status is recorded
as the gRPC code the server gives for the same failure (servescope.status).
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import gevent
import gevent.ssl
from locust.contrib.fasthttp import FastHttpUser

from loadtest.locust_users.process import PROCESS, GrpcStatusError, Process, delay_since
from loadtest.payload import inputs_from_rest_metadata, rest_body
from loadtest.samples import CODE_OK, code_of
from servescope.protocol import grpc_service_pb2 as pb
from servescope.status import grpc_name_of_http


class HttpUser(FastHttpUser):
    """A user over KServe v2 REST."""

    abstract = True
    process: Process = PROCESS

    @classmethod
    def open(cls, process: Process) -> None:
        process.transport["bodies"] = []

    @classmethod
    def model_inputs(cls, process: Process, model: str) -> list[Any]:
        connection = process.connection
        url = connection.base_url(process.config["target"]) + connection.model_path(model)
        request = urllib.request.Request(url, headers=dict(connection.headers))
        context = connection.ssl_context(gevent.ssl.create_default_context)
        with urllib.request.urlopen(request, timeout=process.timeout_s, context=context) as response:
            return inputs_from_rest_metadata(json.loads(response.read()))

    @classmethod
    def prepare(cls, process: Process, requests: list[pb.ModelInferRequest]) -> None:
        """Each request's REST body (binary tensors) and headers, built once."""
        bodies = []
        for request in requests:
            body, header_length = rest_body(request)
            headers = {
                **process.connection.headers,
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(header_length),
            }
            bodies.append((body, headers))
        process.transport["bodies"] = bodies

    def __init__(self, environment: Any) -> None:
        config = self.process.read_config(environment)
        connection = self.process.connection
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
        self.process.setup(self.environment, type(self))
        self.path = self.process.connection.model_path(self.process.model) + "/infer"
        self.last_end_s: float | None = None

    def on_stop(self) -> None:
        pass

    def call(self, scheduled_s: float | None = None) -> int:
        """One inference; FastHttpSession reports it to Locust (once), this to the samples (with the
        generator's own delay before the call, as GrpcUser.call)."""
        process = self.process
        setup_code = process.build_payloads(type(self))
        index = process.take_index()
        model, batch = process.model, process.batch_size
        started = time.perf_counter()
        delay_s = delay_since(started, scheduled_s if scheduled_s is not None else self.last_end_s)
        if index is None:
            code, exception = process.no_payload(setup_code)
            process.record(time.time(), time.perf_counter() - started, code, batch, delay_s)
            self.environment.events.request.fire(
                request_type="POST", name=model, response_time=0.0, response_length=0,
                exception=exception, context={},
            )  # fmt: skip
            return code
        body, headers = process.transport["bodies"][index]
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
        process.record(time.time(), self.last_end_s - started, code, batch, delay_s)
        return code


def _answer_message(answer: Any) -> str:
    try:
        return str(json.loads(answer.content)["error"])
    except Exception:
        return str(getattr(answer, "error", "") or "")
