"""The GRPCInferenceService servicer: thin. Convert the request, await the data plane, convert back.

No model logic and no status codes here: domain errors propagate to ErrorStatusInterceptor, the one
place that turns them into gRPC status codes (server.errors says which), registered once on the server.
ModelStreamInfer answers errors in-band, as the protocol asks, with the same messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from server import grpc_codec
from server.dataplane import DataPlane
from server.errors import InvalidInput, client_message, status_of
from servescope import __version__
from servescope.protocol import POOL, SERVICE_NAME
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc


class _Malformed:
    """Stands in for a request whose bytes are not a valid protobuf message."""

    def __init__(self, method: str) -> None:
        self.method = method

    def error(self) -> InvalidInput:
        return InvalidInput(f"malformed {self.method} request: not a valid protobuf message")


def _check(request: Any) -> None:
    if isinstance(request, _Malformed):
        raise request.error()


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message of an exception raised while serving."""
    return grpc.StatusCode[status_of(exc)], client_message(exc)


class ErrorStatusInterceptor(grpc.aio.ServerInterceptor):
    """Unary calls: a malformed request or a domain error ends the call with its status code and message.

    Handlers are wrapped once per method and cached, so a call pays one dictionary lookup.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary

        async def mapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                _check(request)
                return await behavior(request, context)
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                code, message = grpc_status(exc)
                await context.abort(code, message)

        wrapped = grpc.unary_unary_rpc_method_handler(
            mapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 / Open Inference Protocol over grpc.aio."""

    def __init__(self, core: DataPlane, live: Callable[[], bool]) -> None:
        self._core = core
        self._live = live

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
        response = await self._core.infer(grpc_codec.infer_request(request), context.time_remaining())
        return grpc_codec.infer_response(response)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests of one stream run concurrently; responses return as they finish, errors in-band."""
        responses: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def answer(request: pb.ModelInferRequest) -> None:
            try:
                _check(request)
                response = await self._core.infer(grpc_codec.infer_request(request), context.time_remaining())
                responses.put_nowait(
                    pb.ModelStreamInferResponse(infer_response=grpc_codec.infer_response(response))
                )
            except Exception as exc:
                failed = pb.ModelInferResponse()
                if not isinstance(request, _Malformed):
                    failed.model_name, failed.id = request.model_name, request.id
                responses.put_nowait(
                    pb.ModelStreamInferResponse(error_message=client_message(exc), infer_response=failed)
                )

        async def read() -> None:
            try:
                async for request in request_iterator:
                    task = asyncio.get_running_loop().create_task(answer(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    await asyncio.gather(*list(running))
            except grpc.RpcError:
                pass  # the client went away: nothing is left to answer
            finally:
                responses.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (response := await responses.get()) is not None:
                yield response
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()


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
            response_serializer=response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


def _safe_parser(method: str, parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, ValueError, RuntimeError):
            return _Malformed(method)

    return deserialize
