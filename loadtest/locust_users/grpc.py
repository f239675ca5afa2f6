"""KServe v2 over gRPC: the process's channels, the model's metadata, and the user with its unary client.

Channels and payloads are per process; users are dealt over the process's connections (HTTP/2
multiplexes the users of one connection). With `streaming` each user sends on one ModelStreamInfer
stream of its connection instead (grpc_stream.py), as perf_analyzer --streaming does.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
from locust import User

from loadtest.locust_users.grpc_stream import StreamClient
from loadtest.locust_users.process import PROCESS, GrpcStatusError, Process, delay_since
from loadtest.payload import inputs_from_metadata
from loadtest.samples import CODE_OK, code_of
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

# Several connections: a server whose workers share a port is balanced by connection. A subchannel
# pool of its own makes each channel its own TCP connection.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.use_local_subchannel_pool", 1),
]


class UnaryClient:
    """One ModelInfer call per request."""

    request_type = "grpc"

    def __init__(self, stub: pb_grpc.GRPCInferenceServiceStub, metadata: tuple[tuple[str, str], ...]) -> None:
        self.stub, self.metadata = stub, metadata

    def infer(self, request: pb.ModelInferRequest, timeout_s: float) -> pb.ModelInferResponse:
        return self.stub.ModelInfer(request, timeout=timeout_s, metadata=self.metadata)

    def close(self) -> None:
        pass


class GrpcUser(User):
    """A user over gRPC, unary or streaming (the connection says which)."""

    abstract = True
    process: Process = PROCESS

    @classmethod
    def open(cls, process: Process) -> None:
        connections = max(1, int(process.config.get("connections", 1)))
        channel = process.connection.grpc_channel
        stubs = [
            pb_grpc.GRPCInferenceServiceStub(channel(process.config["target"], options=CHANNEL_OPTIONS))
            for _ in range(connections)
        ]
        process.transport.update(stubs=stubs, users=0)

    @classmethod
    def model_inputs(cls, process: Process, model: str) -> list[Any]:
        connection = process.connection
        request = pb.ModelMetadataRequest(name=model, version=connection.model_version)
        stub = process.transport["stubs"][0]
        return inputs_from_metadata(
            stub.ModelMetadata(request, timeout=process.timeout_s, metadata=connection.metadata())
        )

    @classmethod
    def prepare(cls, process: Process, requests: list[pb.ModelInferRequest]) -> None:
        pass  # the requests are sent as they are

    def on_start(self) -> None:
        process = self.process
        process.setup(self.environment, type(self))
        stubs = process.transport["stubs"]
        stub = stubs[process.transport["users"] % len(stubs)]  # users dealt over the connections in turn
        process.transport["users"] += 1
        metadata = process.connection.metadata()
        streaming = process.connection.streaming
        self.client = StreamClient(stub, metadata, process) if streaming else UnaryClient(stub, metadata)
        self.last_end_s: float | None = None

    def on_stop(self) -> None:
        self.client.close()

    def call(self, scheduled_s: float | None = None) -> int:
        """One inference, timed with perf_counter, reported once to Locust and once to samples.

        The sample also records the generator's own delay before the call: how late it left against
        `scheduled_s` (open loop), or how long after this user's previous answer (closed loop).
        """
        process = self.process
        setup_code = process.build_payloads(type(self))
        index = process.take_index()
        exception: Exception | None = None
        length = 0
        started = time.perf_counter()
        delay_s = delay_since(started, scheduled_s if scheduled_s is not None else self.last_end_s)
        if index is None:
            code, exception = process.no_payload(setup_code)
        else:
            try:
                response = self.client.infer(process.requests[index], process.timeout_s)
                length = sum(len(c) for c in response.raw_output_contents)
                code = CODE_OK
            except grpc.RpcError as exc:
                code = exc.code().value[0]
                exception = GrpcStatusError(exc.code().name, exc.details() or "")
            except GrpcStatusError as exc:
                code, exception = code_of(str(exc)), exc
        self.last_end_s = time.perf_counter()
        latency_s = self.last_end_s - started
        process.record(time.time(), latency_s, code, process.batch_size, delay_s)
        self.environment.events.request.fire(
            request_type=self.client.request_type,
            name=process.model,
            response_time=latency_s * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )
        return code
