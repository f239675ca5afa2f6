"""The metrics port: /metrics (Prometheus text), /healthz (live) and /readyz (ready), on asyncio.

A minimal HTTP/1.1 server, one request per connection, enough for Prometheus, probes and curl.
The exposition is rendered off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class MetricsHttpServer:
    """Serves one registry and two probes on host:port (port 0 picks a free port)."""

    def __init__(
        self, registry: CollectorRegistry, live: Callable[[], bool], ready: Callable[[], bool]
    ) -> None:
        self._registry = registry
        self._live = live
        self._ready = ready
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen and return the bound port."""
        self._server = await asyncio.start_server(self._handle, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10.0)
            while (await asyncio.wait_for(reader.readline(), 10.0)) not in (b"\r\n", b"\n", b""):
                pass  # headers are not needed
            status, content_type, body = await self._respond(request_line)
            head_only = request_line.startswith(b"HEAD ")
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if not head_only:
                writer.write(body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("metrics HTTP request failed")
        finally:
            writer.close()

    async def _respond(self, request_line: bytes) -> tuple[int, str, bytes]:
        parts = request_line.decode("latin-1").split()
        if len(parts) < 2:
            return 400, "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if target == "/metrics":
            body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, self._registry)
            return 200, CONTENT_TYPE_LATEST, body
        if target == "/healthz":
            return (200, "text/plain", b"ok\n") if self._live() else (503, "text/plain", b"not live\n")
        if target == "/readyz":
            return (200, "text/plain", b"ready\n") if self._ready() else (503, "text/plain", b"not ready\n")
        return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"
