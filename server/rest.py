"""The KServe v2 REST front end on aiohttp, in the same event loop as the gRPC server: thin, as the
servicer is. Convert the request (rest_codec.py), await the data plane, convert back.

Every endpoint answers JSON; errors are `{"error": message}` with the domain error's `http_status`
(server.errors) and the same message gRPC gives. Health endpoints answer 200 for true and 400 for false,
as the protocol and Triton do. One route takes every path and dispatches on its parts, so that unknown
paths and methods answer in the protocol's JSON too, and a request pays one split, not a router walk.

Requests HTTP itself rejects (a malformed request line, headers over the size limits, a body that does
not match its Content-Length) get aiohttp's 400 and one warning line in the log, never a traceback; a
body over --max-message-bytes gets 413.

An infer call passes the worker's admission (frontend.FrontDoor) before its body is read: over
--max-inflight it is answered 429 with the same message gRPC gives, from a body encoded once, and
nothing is logged; aiohttp then reads and drops the unread body, so the connection stays open.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from server import rest_codec
from server.errors import InvalidInput, ModelNotFound, PermissionDenied, ServingError
from server.frontend import FrontDoor, FrontEnd
from server.stamps import now_ns
from servescope import __version__
from servescope.echo import shown
from servescope.status import HTTP_STATUS

log = logging.getLogger(__name__)

SHUTDOWN_S = 1.0  # after the drain, how long open connections get to finish before they are closed
KEEPALIVE_S = 75.0  # an idle keep-alive connection is closed after this long (as nginx does)
# Over --max-inflight: 429, shed before the body is read.
SHED_STATUS = HTTP_STATUS["RESOURCE_EXHAUSTED"]

_Handler = Callable[[web.Request, list[str]], Awaitable[web.StreamResponse]]


class _OneLine(logging.Filter):
    """aiohttp logs a request it cannot parse with its traceback; say it in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError | ConnectionError):
            record.msg = "%s: %s"
            record.args = ("rejected a malformed HTTP request", " ".join(str(error).split()))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
        return True


_AIOHTTP_LOG = logging.getLogger("servescope.rest.http")
_AIOHTTP_LOG.addFilter(_OneLine())


def _json(status: int, document: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(document).encode(), content_type=rest_codec.JSON_TYPE)


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=rest_codec.error_body(message), content_type=rest_codec.JSON_TYPE)


def _health(value: bool) -> web.Response:
    return web.Response(status=200 if value else 400)


class RestFrontEnd(FrontEnd):
    """KServe v2 REST endpoints over one worker's FrontDoor (see the module docstring)."""

    name = "REST"

    def __init__(
        self,
        door: FrontDoor,
        host: str,
        port: int,
        max_body_bytes: int,
        *,
        reuse_port: bool = False,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """Args:
        port: 0 picks a free port; reuse_port shares it with the other workers (SO_REUSEPORT).
        tls: (certificate chain, private key) PEM files: serve HTTPS.
        """
        self._door = door
        self._restricted = door.restricted(self.name)
        self._core = door.core
        self._live = door.live
        self._host, self._port, self._reuse_port, self._tls = host, port, reuse_port, tls
        self._max_body_bytes = max_body_bytes
        self._runner: web.AppRunner | None = None
        self._shed_cache: tuple[tuple[int, int], bytes] = ((-1, -1), b"")

    async def start(self) -> int:
        """Listen; returns the bound port."""
        app = web.Application(client_max_size=self._max_body_bytes, handler_args={"logger": _AIOHTTP_LOG})
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_S,
            keepalive_timeout=KEEPALIVE_S,
        )
        await self._runner.setup()
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
        try:
            sock = _listening_socket(self._host, self._port, self._reuse_port)
        except OSError as exc:
            raise OSError(
                f"cannot listen for HTTP on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        site = web.SockSite(self._runner, sock, ssl_context=context)
        await site.start()
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- dispatch ----------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        try:
            if parts[0] != "v2":
                raise _NotFound(request.path)
            group, route = self._route(request.method, parts[1:])
            if self._restricted:
                denied = self._restricted.denial(group, request.headers.get)
                if denied is not None:
                    raise PermissionDenied(denied)
            return await route(request, parts[1:])
        except ServingError as exc:
            refusal = self._door.refusal(exc)
            return _error(refusal.http_status, refusal.message)
        except web.HTTPException as exc:  # 413 from request.read(), above --max-message-bytes
            return _error(exc.status, _http_message(exc, self._max_body_bytes))
        except (HttpProcessingError, ConnectionError) as exc:  # the body did not arrive as announced
            return _error(400, f"malformed request body: {str(exc).strip()}")
        except Exception as exc:  # a real fault: fixed message, details logged (FrontDoor.refusal)
            refusal = self._door.refusal(exc)
            return _error(refusal.http_status, refusal.message)

    def _route(self, method: str, parts: list[str]) -> tuple[str, _Handler]:
        """The endpoint group (restricted.py) and handler for a path below /v2 (its parts) and a method;
        raises for unknown ones."""
        count = len(parts)
        if count == 0 or parts == [""]:
            return "metadata", self._allow(method, "GET", self._server_metadata)
        head = parts[0]
        if head == "health" and count == 2 and parts[1] in ("live", "ready"):
            return "health", self._allow(method, "GET", self._server_health)
        if head == "repository" and parts[1:] == ["index"]:
            return "model-repository", self._allow(method, "POST", self._repository_index)
        if head == "models" and parts[1:] == ["stats"]:
            return "statistics", self._allow(method, "GET", self._statistics)
        if head in _UNSERVED_GROUPS:  # Triton's extensions servescope does not serve: still restricted
            return _UNSERVED_GROUPS[head], _unserved
        if head == "models" and count >= 2:
            # models/{m}[/versions/{v}][/ready|config|stats|infer]
            rest = parts[2:]
            if rest[:1] == ["versions"]:
                if len(rest) < 2:
                    raise _NotFound("/v2/" + "/".join(parts))
                rest = rest[2:]
            action = rest[0] if len(rest) == 1 else ("" if not rest else None)
            if rest[:1] == ["trace"]:
                return "trace", _unserved
            handlers = {
                "": ("metadata", "GET", self._model_metadata),
                "ready": ("health", "GET", self._model_ready),
                "config": ("model-config", "GET", self._model_config),
                "stats": ("statistics", "GET", self._statistics),
                "infer": ("inference", "POST", self._infer),
            }
            if action in handlers:
                group, allowed, handler = handlers[action]
                return group, self._allow(method, allowed, handler)
        raise _NotFound("/v2/" + "/".join(parts))

    @staticmethod
    def _allow(method: str, allowed: str, handler: _Handler) -> _Handler:
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            raise _MethodNotAllowed(method, allowed)
        return handler

    # ---- endpoints ---------------------------------------------------------------------------------

    @staticmethod
    def _model(parts: list[str]) -> tuple[str, str]:
        """(model, version) of a models/{m}[/versions/{v}]/... path."""
        version = parts[3] if len(parts) >= 4 and parts[2] == "versions" else ""
        return parts[1], version

    async def _server_metadata(self, request: web.Request, parts: list[str]) -> web.Response:
        return _json(200, rest_codec.server_metadata(self._core.server_metadata(__version__)))

    async def _server_health(self, request: web.Request, parts: list[str]) -> web.Response:
        return _health(self._live() if parts[1] == "live" else self._core.ready)

    async def _model_metadata(self, request: web.Request, parts: list[str]) -> web.Response:
        return _json(200, rest_codec.model_metadata(self._core.model_metadata(*self._model(parts))))

    async def _model_ready(self, request: web.Request, parts: list[str]) -> web.Response:
        return _health(self._core.model_ready(*self._model(parts)))

    async def _model_config(self, request: web.Request, parts: list[str]) -> web.Response:
        return _json(200, rest_codec.message_json(self._core.model_config(*self._model(parts))))

    async def _statistics(self, request: web.Request, parts: list[str]) -> web.Response:
        from server import grpc_codec  # the statistics message is Triton's; its JSON is the REST form

        name, version = ("", "") if parts == ["models", "stats"] else self._model(parts)
        message = grpc_codec.statistics(self._core.statistics(name, version))
        document = rest_codec.message_json(message)
        document.setdefault("model_stats", [])
        return _json(200, document)

    async def _repository_index(self, request: web.Request, parts: list[str]) -> web.Response:
        body = await request.read()
        ready_only = False
        if body.strip():
            try:
                document = json.loads(body)
            except (UnicodeDecodeError, ValueError) as exc:
                raise InvalidInput(f"repository index request is not valid JSON: {exc}") from exc
            if not isinstance(document, dict) or not isinstance(document.get("ready", False), bool):
                raise InvalidInput(
                    f'repository index request must be {{"ready": true|false}}, found {document!r}'
                )
            ready_only = document.get("ready", False)
        return _json(200, rest_codec.repository_index(self._core.repository_index(ready_only)))

    async def _infer(self, request: web.Request, parts: list[str]) -> web.Response:
        """Admitted (FrontDoor) before a byte of the body is read: a shed call costs its answer only."""
        handler_ns = now_ns()  # the request timeline's first stamps (server/stamps.py)
        door = self._door
        if not door.admit():
            return web.Response(status=SHED_STATUS, body=self._shed_body(), content_type=rest_codec.JSON_TYPE)
        try:
            return await self._admitted_infer(request, parts, (handler_ns, now_ns()))
        finally:
            door.done()

    def _shed_body(self) -> bytes:
        """The shed answer's body, encoded once per (in flight, cap): under overload it is always the same."""
        gate = self._door.admission
        key = (gate.inflight, gate.max_inflight)
        if self._shed_cache[0] != key:
            self._shed_cache = (key, rest_codec.error_body(gate.shed_message()))
        return self._shed_cache[1]

    async def _admitted_infer(
        self, request: web.Request, parts: list[str], entry: tuple[int, int]
    ) -> web.Response:
        model, version = self._model(parts)
        header_length = _header_length(request, model)
        body = await request.read()
        asked = rest_codec.infer_request(model, version, body, header_length, entry)
        time_remaining_s = None if asked.timeout_us is None else asked.timeout_us / 1e6
        response = await self._core.infer(asked.request, time_remaining_s)
        payload, json_length = rest_codec.infer_response(response, asked)
        if json_length is None:
            return web.Response(body=payload, content_type=rest_codec.JSON_TYPE)
        answer = web.Response(body=payload, content_type=rest_codec.BINARY_TYPE)
        answer.headers[rest_codec.HEADER_LENGTH] = str(json_length)
        return answer


# The first path part below /v2 of the Triton extensions servescope does not serve, and their group.
_UNSERVED_GROUPS = {
    "systemsharedmemory": "shared-memory",
    "cudasharedmemory": "shared-memory",
    "trace": "trace",
}


async def _unserved(request: web.Request, parts: list[str]) -> web.Response:
    extension = "trace" if "trace" in parts else "shared-memory"
    path = "/v2/" + "/".join(parts)
    raise ModelNotFound(f"servescope does not serve Triton's {extension} extension (at {shown(path)})")


def _header_length(request: web.Request, model: str) -> int | None:
    text = request.headers.get(rest_codec.HEADER_LENGTH)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(
            f"model {model!r}: {rest_codec.HEADER_LENGTH} {text!r} is not a byte count"
        ) from None


class _NotFound(ModelNotFound):
    """No endpoint at this path (404, as an unknown model is)."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"no KServe v2 endpoint at {path!r} (try /v2, /v2/health/ready, /v2/models/NAME, "
            "/v2/models/NAME/infer)"
        )


class _MethodNotAllowed(InvalidInput):
    http_status = 405

    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(f"method {method} not allowed here (use {allowed})")


def _http_message(exc: web.HTTPException, limit: int) -> str:
    if exc.status == 413:
        return f"request body larger than the limit of {limit} bytes (--max-message-bytes)"
    return exc.text or exc.reason


def _listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening TCP socket; with reuse_port, SO_REUSEPORT so that every worker serves the port."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bare, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
