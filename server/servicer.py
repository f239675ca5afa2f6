"""The GRPCInferenceService servicer: thin. Convert the request, await the data plane, convert back.

No model logic and no status codes here: domain errors propagate to ErrorStatusInterceptor, the one
place that turns them into gRPC status codes (server.errors says which), registered once on the server.
ModelStreamInfer answers errors in-band, as the protocol asks, with the same messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from server import grpc_codec
from server.admission import SHUTTING_DOWN_MESSAGE, Admission
from server.dataplane import DataPlane
from server.errors import ResponseTooLarge, client_message, status_of
from server.grpc_stream import (
    STREAM_DRAINED_MESSAGE,
    STREAM_REFUSED_MESSAGE,
    Malformed,
    Stream,
    check_parsed,
    too_large,
)
from server.restricted import Restrictions
from server.stamps import ENTRY, now_ns
from servescope import __version__
from servescope.protocol import POOL, SERVICE_NAME
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

INFER_METHOD = f"/{SERVICE_NAME}/ModelInfer"
HEALTH_SERVICE = "grpc.health.v1.Health"
# The restricted endpoint group (server/restricted.py) of each GRPCInferenceService method, as Triton's.
METHOD_GROUPS = {
    "ServerLive": "health", "ServerReady": "health", "ModelReady": "health",
    "ServerMetadata": "metadata", "ModelMetadata": "metadata",
    "ModelInfer": "inference", "ModelStreamInfer": "inference",
    "ModelConfig": "model-config", "ModelStatistics": "statistics",
    "RepositoryIndex": "model-repository", "RepositoryModelLoad": "model-repository",
    "RepositoryModelUnload": "model-repository",
    "SystemSharedMemoryStatus": "shared-memory", "SystemSharedMemoryRegister": "shared-memory",
    "SystemSharedMemoryUnregister": "shared-memory", "CudaSharedMemoryStatus": "shared-memory",
    "CudaSharedMemoryRegister": "shared-memory", "CudaSharedMemoryUnregister": "shared-memory",
    "TraceSetting": "trace",
}  # fmt: skip


def method_group(method: str) -> str | None:
    """The endpoint group of a full gRPC method name; None for reflection (never restricted)."""
    service, _, name = method.lstrip("/").partition("/")
    if service == SERVICE_NAME:
        return METHOD_GROUPS.get(name)
    return "health" if service == HEALTH_SERVICE else None


DEFAULT_STREAM_MAX_INFLIGHT = 16
DEFAULT_MAX_SEND_BYTES = 64 * 1024 * 1024


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message of an exception raised while serving."""
    return grpc.StatusCode[status_of(exc)], client_message(exc)


class ErrorStatusInterceptor(grpc.aio.ServerInterceptor):
    """Unary calls: admission, then a malformed request or a domain error ends the call with its status
    code and message; the answer is serialized here and checked against the largest message allowed.

    Handlers are wrapped once per method and cached, so a call pays one dictionary lookup and, for
    ModelInfer, one comparison against the in-flight cap.
    """

    def __init__(
        self,
        admission: Admission | None = None,
        max_send_bytes: int = DEFAULT_MAX_SEND_BYTES,
        restrictions: Restrictions | None = None,
    ) -> None:
        self._admission = admission if admission is not None else Admission(0)
        self._restrictions = restrictions if restrictions else None
        self._max_send_bytes = max_send_bytes
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        gate = self._admission

        async def shed(request: bytes, context: grpc.aio.ServicerContext) -> None:
            gate.shed()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, gate.shed_message())

        async def held(request: bytes, context: grpc.aio.ServicerContext) -> None:
            await gate.held()
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)

        # Neither reads the request (no deserializer): a shed or held call costs no parsing.
        self._shed = grpc.unary_unary_rpc_method_handler(shed)
        self._held = grpc.unary_unary_rpc_method_handler(held)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if self._restrictions is not None:
            denied = await self._denied(handler_call_details, continuation)
            if denied is not None:
                return denied
        gate = self._admission
        gate.calls_seen += 1
        if gate.holding:
            handler = self._wrapped.get(method) or await continuation(handler_call_details)
            if handler is not None and handler.unary_unary is not None:
                return self._held
        elif gate.inflight >= gate.max_inflight and method == INFER_METHOD:
            return self._shed
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._wrap(method, handler), request_deserializer=handler.request_deserializer
        )
        self._wrapped[method] = wrapped
        return wrapped

    async def _denied(
        self,
        details: grpc.HandlerCallDetails,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
    ) -> grpc.RpcMethodHandler | None:
        """A handler answering PERMISSION_DENIED (reading nothing) when the method's group is restricted
        and the call lacks its key; None when the call may go on."""
        group = method_group(details.method)
        if group is None or self._restrictions is None:
            return None
        metadata = details.invocation_metadata or ()
        message = self._restrictions.denial(
            group, lambda key: next((value for name, value in metadata if name == key), None)
        )
        if message is None:
            return None
        handler = await continuation(details)

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

        if handler is not None and handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler is not None and handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> Callable[..., Awaitable[bytes]]:
        behavior, serialize = handler.unary_unary, handler.response_serializer
        limit, gate = self._max_send_bytes, self._admission

        def answer(response: Any) -> bytes:
            data = serialize(response) if serialize is not None else response
            if len(data) > limit:
                raise ResponseTooLarge(too_large(method, response, len(data), limit))
            return data

        async def mapped(request: Any, context: grpc.aio.ServicerContext) -> bytes:
            try:
                check_parsed(request)
                return answer(await behavior(request, context))
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                code, message = grpc_status(exc)
                await context.abort(code, message)
                raise  # not reached: abort raises

        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> bytes:
            # mapped() with the worker's in-flight count around it, written out: one coroutine per call.
            handler_ns = now_ns()  # the request timeline's first stamps (server/stamps.py)
            if not gate.admit():
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, gate.shed_message())
            ENTRY.set((handler_ns, now_ns()))
            try:
                check_parsed(request)
                return answer(await behavior(request, context))
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                code, message = grpc_status(exc)
                await context.abort(code, message)
                raise  # not reached: abort raises
            finally:
                gate.done()

        return admitted if method == INFER_METHOD else mapped


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 / Open Inference Protocol over grpc.aio."""

    def __init__(
        self,
        core: DataPlane,
        live: Callable[[], bool],
        admission: Admission | None = None,
        *,
        stream_max_inflight: int = DEFAULT_STREAM_MAX_INFLIGHT,
        max_send_bytes: int = DEFAULT_MAX_SEND_BYTES,
    ) -> None:
        if stream_max_inflight < 1:
            raise ValueError(f"stream_max_inflight must be >= 1, got {stream_max_inflight}")
        self._core = core
        self._live = live
        self._admission = admission if admission is not None else Admission(0)
        self._stream_max_inflight = stream_max_inflight
        self._max_send_bytes = max_send_bytes

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._core.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._core.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return grpc_codec.server_metadata(self._core.server_metadata(__version__))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        return grpc_codec.model_metadata(self._core.model_metadata(request.name, request.version))

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse(config=self._core.model_config(request.name, request.version))

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        return grpc_codec.statistics(self._core.statistics(request.name, request.version))

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        return grpc_codec.repository_index(self._core.repository_index(request.ready))

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        entry = ENTRY.get() or (now_ns(),) * 2  # called past the interceptor (tests): no entry stamps
        response = await self._core.infer(grpc_codec.infer_request(request, entry), context.time_remaining())
        return grpc_codec.infer_response(response)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> None:
        """Requests of one stream run concurrently (at most stream_max_inflight at once); answers return
        as they finish, errors in-band. Draining: the stream runs nothing more, answers every request it
        read (those read meanwhile with an in-band refusal), then ends with UNAVAILABLE saying how many
        it answered."""
        gate = self._admission
        if gate.holding:
            await gate.held()
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)
        if gate.refusing_streams or self._core.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, STREAM_REFUSED_MESSAGE)
        stream = Stream(self._core, gate, context, self._stream_max_inflight, self._max_send_bytes)
        await stream.run()
        if stream.closed_by_drain and not stream.client_gone:
            await context.abort(grpc.StatusCode.UNAVAILABLE, STREAM_DRAINED_MESSAGE.format(stream.answered))


def add_to_server(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Register the service with deserializers that turn undecodable bytes into INVALID_ARGUMENT.

    The generated registration would let gRPC answer INTERNAL for a request that does not parse.
    """
    handlers = {}
    for method in POOL.FindServiceByName(SERVICE_NAME).methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        make_handler = (
            grpc.stream_stream_rpc_method_handler
            if method.client_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make_handler(
            getattr(servicer, method.name),
            request_deserializer=_safe_parser(method.name, request_class.FromString),
            # ModelStreamInfer writes bytes it serialized itself (to check their size first).
            response_serializer=None if method.client_streaming else response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


def _safe_parser(method: str, parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, ValueError, RuntimeError):
            return Malformed(method)

    return deserialize
