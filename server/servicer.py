"""The GRPCInferenceService servicer: thin. Hand the request to the data plane, map errors, return.

Status codes are chosen only by server.errors.status_for; no model logic lives here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from server.core import DataPlane
from server.errors import status_for
from servescope import __version__
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

Response = TypeVar("Response")


def _mapped(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Response]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Response]]:
    """Turn the domain errors a unary method raises into the gRPC status of server.errors."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Response:
        try:
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
                response = await self._core.infer(request, context.time_remaining())
                responses.put_nowait(pb.ModelStreamInferResponse(infer_response=response))
            except Exception as exc:
                _, message = status_for(exc)
                failed = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
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
