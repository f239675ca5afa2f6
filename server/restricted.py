"""Restricted endpoint groups, as Triton's `--grpc-restricted-protocol` and `--http-restricted-api`:
`<group>[,<group>...]:<key>=<value>` keeps those groups for callers that send header `<key>` (gRPC:
`triton-grpc-protocol-<key>`) with exactly `<value>`.

A caller without it gets PERMISSION_DENIED (gRPC) / 403 (REST) with one line naming the group and the
header expected, never the value; the value is compared in constant time and never logged or shown (a
Restriction's repr hides it). The front ends ask `Restrictions.denial()` at the seam (frontend.py)
before anything else runs for the call. No protocol here: this module imports neither gRPC nor aiohttp.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from servescope.echo import shown

GROUPS = (
    "health", "metadata", "inference", "statistics", "model-config", "model-repository", "shared-memory",
    "trace",
)  # fmt: skip
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # Triton's: the gRPC header is this plus the key
FORMAT = "<group>[,<group>...]:<key>=<value>"


@dataclass(frozen=True)
class Restriction:
    """Some endpoint groups, open only to callers that send `header` with the value."""

    groups: frozenset[str]
    header: str  # as the client sends it, lowercase (HTTP headers and gRPC metadata keys ignore case)
    value: bytes = field(repr=False)


def parse(text: str, flag: str, header_prefix: str = "") -> Restriction:
    """One flag value, `<groups>:<key>=<value>`; raises ValueError naming the flag (never the value)."""
    groups_text, colon, grant = text.partition(":")
    key, equals, value = grant.partition("=")
    if not (colon and equals and groups_text and key and value):
        raise ValueError(f"{flag}: expected {FORMAT} (the value given is not shown: it may hold the key)")
    groups = [group.strip() for group in groups_text.split(",")]
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        raise ValueError(f"{flag}: unknown endpoint group {shown(unknown[0])} (known: {', '.join(GROUPS)})")
    if any(c.isspace() or ord(c) < 33 for c in key):
        raise ValueError(f"{flag}: the header key {shown(key)} has spaces or control characters")
    return Restriction(frozenset(groups), header_prefix + key.lower(), value.encode())


class Restrictions:
    """Every restricted group of one front end, each with the header and value that open it."""

    def __init__(self, restrictions: Iterable[Restriction] = (), flag: str = "") -> None:
        """Raises ValueError when a group is in two restrictions (as Triton refuses it)."""
        self._by_group: dict[str, Restriction] = {}
        for restriction in restrictions:
            for group in sorted(restriction.groups):
                if group in self._by_group:
                    raise ValueError(f"{flag}: endpoint group {group!r} is in more than one restriction")
                self._by_group[group] = restriction

    def __bool__(self) -> bool:
        return bool(self._by_group)

    @property
    def groups(self) -> list[str]:
        return sorted(self._by_group)

    def denial(self, group: str, header: Callable[[str], str | bytes | None]) -> str | None:
        """None when the call may go on; else the one-line refusal, naming the group and the header.

        Args:
            header: looks a (lowercase) header up in the call's headers or metadata.
        """
        restriction = self._by_group.get(group)
        if restriction is None:
            return None
        sent = header(restriction.header)
        if sent is not None:
            given = sent.encode() if isinstance(sent, str) else sent
            if hmac.compare_digest(given, restriction.value):
                return None
        return (
            f"endpoint group {group!r} is restricted: send header {restriction.header!r} with its key "
            f"({'the key sent does not match' if sent is not None else 'no such header in the call'})"
        )
