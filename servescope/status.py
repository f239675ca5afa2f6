"""Status codes both protocols share: the gRPC status code name of each failure and its HTTP status
(KServe v2 REST), the server's answer (server/errors.py) and the load tester's reading of an HTTP
status (loadtest/) from one table.

Step records count errors by gRPC status code name whatever the protocol (servescope.results), so an
HTTP answer is recorded under the name of the gRPC code the server gives for the same failure.
"""

from __future__ import annotations

# gRPC status code name -> HTTP status, for every code the server answers with.
HTTP_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
}
# HTTP statuses the table above does not give back by itself.
_EXTRA = {
    405: "INVALID_ARGUMENT",  # a method the endpoint does not take
    413: "RESOURCE_EXHAUSTED",  # a body over the limit (gRPC: a message over the limit)
    431: "INVALID_ARGUMENT",  # headers too large
}
_BY_HTTP = {status: name for name, status in HTTP_STATUS.items()} | _EXTRA


def grpc_name_of_http(status: int) -> str:
    """The gRPC status code name an HTTP status stands for (OK for 2xx, UNKNOWN for the unlisted)."""
    if 200 <= status < 300:
        return "OK"
    return _BY_HTTP.get(status, "INVALID_ARGUMENT" if 400 <= status < 500 else "UNKNOWN")
