"""KServe v2 ModelStreamInfer: one stream per user, requests matched to answers by id."""

from __future__ import annotations

import itertools
import os
from typing import Any

import gevent
import gevent.event
import gevent.queue
import grpc

from loadtest.locust_users.process import GrpcStatusError, Process
from loadtest.samples import code_name
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

STREAM_ERROR = grpc.StatusCode.UNKNOWN.value[0]  # an in-band ModelStreamInfer error carries no code


class StreamClient:
    """One ModelStreamInfer stream: requests go in through a queue, a reader greenlet hands each answer
    to the call that waits for its id (answers come back as they finish, not in order)."""

    request_type = "grpc-stream"

    def __init__(
        self, stub: pb_grpc.GRPCInferenceServiceStub, metadata: tuple[tuple[str, str], ...], process: Process
    ) -> None:
        self._process = process
        self._outbox: gevent.queue.Queue = gevent.queue.Queue()
        self._waiting: dict[str, gevent.event.AsyncResult] = {}
        self._ids = itertools.count()
        self._prefix = f"{os.getpid()}-{id(self)}-"
        self._broken: Exception | None = None  # set once the stream has ended
        self._responses: Any = stub.ModelStreamInfer(iter(self._outbox.get, None), metadata=metadata)
        self._reader = gevent.spawn(self._read)
        process.streams.add(self)

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
        self._process.streams.discard(self)
        self._outbox.put(None)
        self._responses.cancel()
        self._reader.kill(block=False)
