"""Domain errors of the server and the one function that maps them to gRPC status codes.

Layers below the servicer raise these plain exceptions and never choose status codes; `status_for`
is the only place that knows the mapping. Anything else is a real fault: INTERNAL with a fixed
message for the client, the details go to the log.
"""

from __future__ import annotations

import logging

import grpc

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error"


class InvalidInput(ValueError):
    """The request is malformed or does not fit the model (name, dtype, shape, value range, size)."""


class ModelNotFound(LookupError):
    """No such model, or no such version of it."""


class Unavailable(RuntimeError):
    """The server or the model cannot take requests now (not ready yet, or draining)."""


class Overloaded(RuntimeError):
    """The model's queue is full: the request is shed at once rather than queued."""


class DeadlineExpired(TimeoutError):
    """The client's deadline passed before the request was computed; it was dropped, never run."""


_CODES: dict[type[BaseException], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExpired: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code of an exception; INTERNAL for anything that is not a domain error."""
    for kind, code in _CODES.items():
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message for an exception raised while serving."""
    code = code_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("internal error while serving a request", exc_info=exc)
        return code, INTERNAL_MESSAGE
    return code, str(exc)
