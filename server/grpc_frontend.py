"""The gRPC front end: GRPCInferenceService (servicer.py), grpc.health.v1 and server reflection on one
grpc.aio server, behind the front-end seam (frontend.py).

Admission and the error map reach gRPC through ErrorStatusInterceptor (unary calls) and the stream
handler (each request read from a stream), both built over the worker's FrontDoor.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from server.frontend import FrontDoor, FrontEnd
from server.servicer import ErrorStatusInterceptor, InferenceServicer, add_to_server
from servescope.protocol import POOL, SERVICE_NAME

log = logging.getLogger(__name__)

# Draining (docs/server.md, Reliability): after the accepted calls finished, new calls are still
# refused for DRAIN_LINGER_S (clients see UNAVAILABLE and go elsewhere); if calls still came in
# meanwhile, new ones are then held for DRAIN_HOLD_S (so that every client that retries at once waits
# on a call of its own when gRPC's shutdown starts) and answered UNAVAILABLE DRAIN_GOAWAY_S after the
# shutdown started (its GOAWAY has reached the clients).
DRAIN_LINGER_S = 0.25
DRAIN_HOLD_S = 0.25
DRAIN_GOAWAY_S = 0.25


@dataclass(frozen=True)
class GrpcSettings:
    """Where and how the gRPC front end listens."""

    host: str
    port: int
    max_message_bytes: int
    stream_max_inflight: int
    reuse_port: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    extra_options: tuple[tuple[str, int], ...] = ()


def server_credentials(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> grpc.ServerCredentials | None:
    """TLS credentials from --tls-cert / --tls-key (and --tls-client-ca), checked first with the ssl
    module: gRPC itself reports a garbage certificate or key only as "Failed to bind to address".

    Raises ValueError naming the file and what is wrong with it.
    """
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise ValueError("--tls-cert and --tls-key must be given together (and --tls-client-ca needs both)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(
            f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate chain and its private key "
            f"({exc.reason or exc})"
        ) from exc
    except OSError as exc:
        raise ValueError(f"--tls-cert {cert} / --tls-key {key}: cannot read: {exc.strerror}") from exc
    ca_bytes = None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
            ca_bytes = client_ca.read_bytes()
        except ssl.SSLError as exc:
            raise ValueError(
                f"--tls-client-ca {client_ca}: not a PEM CA certificate ({exc.reason or exc})"
            ) from exc
        except OSError as exc:
            raise ValueError(f"--tls-client-ca {client_ca}: cannot read: {exc.strerror}") from exc
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=ca_bytes,
        require_client_auth=ca_bytes is not None,
    )


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """Every served service's descriptors in one pool, for server reflection.

    The protocol lives in servescope's private pool (POOL) and health and reflection in protobuf's
    default pool; reflection answers from a single pool, so they are copied into a fresh one.
    """
    pool = descriptor_pool.DescriptorPool()
    for file in (
        POOL.FindFileByName("servescope/protocol/model_config.proto"),
        POOL.FindFileByName("servescope/protocol/grpc_service.proto"),
        health_pb2.DESCRIPTOR,
        reflection_pb2.DESCRIPTOR,
    ):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))
    return pool


class GrpcFrontEnd(FrontEnd):
    """KServe v2 gRPC, health and reflection on one port."""

    name = "gRPC"

    def __init__(self, door: FrontDoor, settings: GrpcSettings) -> None:
        self._door = door
        self._settings = settings
        self._server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()

    async def set_serving(self, serving: bool) -> None:
        """The health service's status, for the whole server and for GRPCInferenceService."""
        states = health_pb2.HealthCheckResponse
        status = states.SERVING if serving else states.NOT_SERVING
        await self.health.set("", status)
        await self.health.set(SERVICE_NAME, status)

    async def start(self) -> int:
        settings, door = self._settings, self._door
        await self.set_serving(False)
        credentials = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        self._server = grpc.aio.server(
            interceptors=[
                ErrorStatusInterceptor(door.admission, settings.max_message_bytes, door.restricted(self.name))
            ],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
                *settings.extra_options,
            ],
        )
        servicer = InferenceServicer(
            door.core,
            door.live,
            door.admission,
            stream_max_inflight=settings.stream_max_inflight,
            max_send_bytes=settings.max_message_bytes,
        )
        add_to_server(servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        services = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, self._server, pool=reflection_pool())
        address = f"{settings.host}:{settings.port}"
        try:
            if credentials is not None:
                port = self._server.add_secure_port(address, credentials)
            else:
                port = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {address}: {exc}") from exc
        await self._server.start()
        return port

    async def begin_drain(self) -> None:
        """Not serving for health checks (the first drain phase)."""
        await self.health.enter_graceful_shutdown()

    async def drain(self, left_s: Callable[[], float]) -> None:
        """Linger, hold the last calls while gRPC's shutdown sends GOAWAY, then answer them UNAVAILABLE."""
        if self._server is None:
            return
        gate = self._door.admission
        seen = gate.calls_seen
        await asyncio.sleep(min(DRAIN_LINGER_S, left_s()))
        # Hold only when clients are still calling: with none, nothing can race the shutdown.
        calling = gate.calls_seen != seen
        if calling:
            gate.hold()
            await asyncio.sleep(min(DRAIN_HOLD_S, left_s()))
        stopping = asyncio.get_running_loop().create_task(self._server.stop(grace=max(left_s(), 1.0)))
        if calling:
            await asyncio.sleep(min(DRAIN_GOAWAY_S, left_s()))
        gate.release()
        await stopping
        self._server = None
        if gate.held_calls:
            log.info("%d calls that came in while stopping were answered UNAVAILABLE", gate.held_calls)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None
