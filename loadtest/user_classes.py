"""The locustfile's user class for each (protocol, load mode): one table for the driver and the file.

gRPC streaming is the gRPC users' own choice (the connection's `streaming`), not a class of its own.
"""

from __future__ import annotations

USER_CLASSES: dict[tuple[str, str], str] = {
    ("grpc", "closed"): "ClosedLoopUser",
    ("grpc", "open"): "OpenLoopUser",
    ("http", "closed"): "HttpClosedLoopUser",
    ("http", "open"): "HttpOpenLoopUser",
}
