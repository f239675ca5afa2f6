"""Domain errors of the server, each with the status it ends with on the wire.

Layers below the front ends raise these plain exceptions and never choose status codes. Every error
names its gRPC status code (by name, so this module stays free of gRPC) and its HTTP status (the table
of servescope.status, which the load tester reads too); the gRPC interceptor and the REST front end
only translate. Anything else is a real fault: INTERNAL with a fixed
message for the client, the details go to the log.
"""

from __future__ import annotations

import logging

from servescope.echo import MESSAGE_LIMIT_CHARS, cut
from servescope.status import HTTP_STATUS

log = logging.getLogger(__name__)

INTERNAL = "INTERNAL"
INTERNAL_MESSAGE = "internal error"


class ServingError(Exception):
    """A request failed for a reason the client should hear about; `status` is its gRPC code name."""

    status = INTERNAL
    http_status = HTTP_STATUS[INTERNAL]


class InvalidInput(ServingError, ValueError):
    """The request is malformed or does not fit the model (name, dtype, shape, value range, size)."""

    status = "INVALID_ARGUMENT"
    http_status = HTTP_STATUS[status]


class ModelNotFound(ServingError, LookupError):
    """No such model, or no such version of it."""

    status = "NOT_FOUND"
    http_status = HTTP_STATUS[status]


class PermissionDenied(ServingError, PermissionError):
    """The endpoint's group is restricted and the call lacks its key (server/restricted.py)."""

    status = "PERMISSION_DENIED"
    http_status = HTTP_STATUS[status]


class Unavailable(ServingError, RuntimeError):
    """The server or the model cannot take requests now (not ready yet, or draining)."""

    status = "UNAVAILABLE"
    http_status = HTTP_STATUS[status]


class Overloaded(ServingError, RuntimeError):
    """The model's queue is full: the request is shed at once rather than queued."""

    status = "RESOURCE_EXHAUSTED"
    http_status = HTTP_STATUS[status]


class ResponseTooLarge(ServingError, ValueError):
    """The answer is larger than the largest message the server may send (--max-message-bytes)."""

    status = "RESOURCE_EXHAUSTED"
    http_status = 500


class DeadlineExpired(ServingError, TimeoutError):
    """The client's deadline passed before the request was computed; it was dropped, never run."""

    status = "DEADLINE_EXCEEDED"
    http_status = HTTP_STATUS[status]


def status_of(exc: BaseException) -> str:
    """The gRPC status code name an exception ends with; INTERNAL for anything not a domain error."""
    return exc.status if isinstance(exc, ServingError) else INTERNAL


def http_status_of(exc: BaseException) -> int:
    """The HTTP status an exception ends with on the REST front end; 500 for anything not a domain error."""
    return exc.http_status if isinstance(exc, ServingError) else HTTP_STATUS[INTERNAL]


def client_message(exc: BaseException) -> str:
    """What the client is told: the domain error's message (cut to MESSAGE_LIMIT_CHARS: a status message
    must fit gRPC's metadata limit, or the client gets RESOURCE_EXHAUSTED instead of the real code), or
    a fixed one for a real fault (logged)."""
    if isinstance(exc, ServingError) and exc.status != INTERNAL:
        return cut(str(exc), MESSAGE_LIMIT_CHARS)
    log.error("internal error while serving a request", exc_info=exc)
    return INTERNAL_MESSAGE
