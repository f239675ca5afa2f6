"""The GRPCInferenceService servicer: thin. Hand the request to the data plane, map errors, return.

Status codes are chosen only by server.errors.status_for; no model logic lives here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from server.core import DataPlane
from server.errors import InvalidInput, status_for
from servescope import __version__
from servescope.protocol import POOL, SERVICE_NAME
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

Response = TypeVar("Response")


class _Malformed:
    """Stands in for a request whose bytes are not a valid protobuf message."""

    def __init__(self, method: str) -> None:
        self.method = method

    def error(self) -> InvalidInput:
        return InvalidInput(f"malformed {self.method} request: not a valid protobuf message")


def _check(request: Any) -> None:
    if isinstance(request, _Malformed):
        raise request.error()


def _mapped(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Response]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Response]]:
    """Turn the domain errors a unary method raises into the gRPC status of server.errors."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Response:
        try:
            _check(request)
            return await method(self, request, context)
        except Exception as exc:
            code, message = status_for(exc)
            await context.abort(code, message)
            raise  # unreachable: abort raises

    return wrapper


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 / Open Inference Protocol over grpc.aio."""

    def __init__(self, core: DataPlane, live: Callable[[], bool]) -> None:
        self._core = core
        self._live = live

    @_mapped
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._live())

    @_mapped
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._core.ready)

    @_mapped
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._core.model_ready(request.name, request.version))

    @_mapped
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return self._core.server_metadata(__version__)

    @_mapped
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        return self._core.model_metadata(request.name, request.version)

    @_mapped
    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        return self._core.model_config(request.name, request.version)

    @_mapped
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        return self._core.statistics(request.name, request.version)

    @_mapped
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        return self._core.repository_index(request.ready)

    @_mapped
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        return await self._core.infer(request, context.time_remaining())

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests of one stream run concurrently; responses return as they finish, errors in-band."""
        responses: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def answer(request: pb.ModelInferRequest) -> None:
            try:
                _check(request)
                response = await self._core.infer(request, context.time_remaining())
                responses.put_nowait(pb.ModelStreamInferResponse(infer_response=response))
            except Exception as exc:
                _, message = status_for(exc)
                failed = pb.ModelInferResponse()
                if not isinstance(request, _Malformed):
                    failed.model_name, failed.id = request.model_name, request.id
                responses.put_nowait(
                    pb.ModelStreamInferResponse(error_message=message, infer_response=failed)
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
