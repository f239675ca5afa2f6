"""The metrics port: /metrics (Prometheus text), /healthz (live) and /readyz (ready), on asyncio.

A minimal HTTP/1.1 server, one request per connection, enough for Prometheus, probes and curl.
The exposition is rendered off the event loop. Requests are untrusted: a request line or header line
longer than LINE_LIMIT_BYTES, or more than MAX_HEADERS header lines, is answered 400 or 431 and logged
in one line (at most one line per REFUSAL_LOG_INTERVAL_S, with a count, so a flood cannot flood the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from server.frontend import FrontEnd

log = logging.getLogger(__name__)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
LINE_LIMIT_BYTES = 64 * 1024  # asyncio's stream limit: the longest request or header line read
MAX_HEADERS = 100
REFUSAL_LOG_INTERVAL_S = 60.0


class _Refused(Exception):
    """A request refused before it was read whole: (status, why)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class MetricsHttpServer(FrontEnd):
    """Serves one registry and two probes on host:port (port 0 picks a free port)."""

    name = "metrics HTTP"

    def __init__(
        self,
        registry: CollectorRegistry,
        live: Callable[[], bool],
        ready: Callable[[], bool],
        host: str,
        port: int,
    ) -> None:
        self._host, self._port = host, port
        self._registry = registry
        self._live = live
        self._ready = ready
        self._server: asyncio.base_events.Server | None = None
        self._refused = 0  # refusals not logged yet
        self._refusal_logged_s = float("-inf")

    async def start(self) -> int:
        """Listen and return the bound port."""
        try:
            self._server = await asyncio.start_server(
                self._handle, self._host, self._port, limit=LINE_LIMIT_BYTES
            )
        except OSError as exc:
            raise OSError(
                f"cannot listen for metrics HTTP on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request_line = await self._read_head(reader)
                status, content_type, body = await self._respond(request_line)
            except _Refused as refused:
                self._note_refusal(refused, writer)
                request_line = b""
                status, content_type, body = refused.status, "text/plain", f"{refused}\n".encode()
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

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        """The request line; the header lines are read (bounded) and dropped."""
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10.0)
        except ValueError as exc:  # asyncio: the line is longer than the stream limit
            raise _Refused(400, f"request line longer than {LINE_LIMIT_BYTES} bytes") from exc
        for _ in range(MAX_HEADERS + 1):
            try:
                line = await asyncio.wait_for(reader.readline(), 10.0)
            except ValueError as exc:
                raise _Refused(431, f"header line longer than {LINE_LIMIT_BYTES} bytes") from exc
            if line in (b"\r\n", b"\n", b""):
                return request_line
        raise _Refused(431, f"more than {MAX_HEADERS} header lines")

    def _note_refusal(self, refused: _Refused, writer: asyncio.StreamWriter) -> None:
        """One log line for the first refusal, then at most one per REFUSAL_LOG_INTERVAL_S with a count."""
        self._refused += 1
        now_s = time.monotonic()
        if now_s - self._refusal_logged_s < REFUSAL_LOG_INTERVAL_S:
            return
        peer = writer.get_extra_info("peername")
        log.warning(
            "metrics HTTP: refused %d request(s) with %d (last from %s: %s)",
            self._refused, refused.status, peer[0] if peer else "?", refused,
        )  # fmt: skip
        self._refused = 0
        self._refusal_logged_s = now_s

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
