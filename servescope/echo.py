"""Values echoed in error messages, cut to a bounded length: the one helper every package uses.

Untrusted input (a 10 MB model name, a YAML alias bomb, a JSON value nested 10,000 deep) must never
turn into an unbounded message: gRPC answers RESOURCE_EXHAUSTED instead of the real code when a status
message outgrows its metadata limit, and rendering an alias bomb's expansion takes minutes and gigabytes.
`shown(value)` does bounded work whatever the value's size or depth, and says what it left out.
"""

from __future__ import annotations

import reprlib
from typing import Any

ECHO_LIMIT_CHARS = 200  # the most characters of one echoed value
# The most characters of a whole error message sent to a client. gRPC carries it percent-encoded in a
# trailer, and clients refuse metadata above 8 KiB by default; echoed text is ASCII (see shown).
MESSAGE_LIMIT_CHARS = 2048

_CUT_MARK = "...[cut: {size} in all]"
_ITEMS = 12  # items of a container shown


class _BoundedRepr(reprlib.Repr):
    """reprlib with room for useful detail; its work is bounded by the level and item limits."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel = 4
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = _ITEMS
        self.maxdict = _ITEMS
        self.maxstring = limit
        self.maxlong = limit
        self.maxother = limit

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # more digits than int-to-str conversion allows (Python 3.11+)
            return f"<int of {x.bit_length()} bits>"

    def repr_str(self, x: str, level: int) -> str:
        return shown(x, self.maxstring)

    def repr_bytes(self, x: bytes, level: int) -> str:
        return shown(x, self.maxstring)


def shown(value: Any, limit: int = ECHO_LIMIT_CHARS) -> str:
    """repr(value), cut to about `limit` characters with a marker saying how long the whole was.

    Strings and bytes are cut before repr (so a 10 MB string costs nothing to show), and strings are
    shown with ascii() escapes (so the text stays ASCII, as compact as gRPC's percent-encoding allows);
    containers are rendered with reprlib's level and item limits, so an alias bomb or deep nesting
    stays cheap.
    """
    if isinstance(value, str | bytes | bytearray):
        text = ascii(value[:limit])
        if len(value) <= limit and len(text) <= limit + 3:
            return text
        unit = "chars" if isinstance(value, str) else "bytes"
        return text[:limit] + _CUT_MARK.format(size=f"{len(value)} {unit}")
    if isinstance(value, bool | float | type(None)):
        return repr(value)
    text = _BoundedRepr(limit).repr(value)
    sized = isinstance(value, list | tuple | dict | set | frozenset)
    if len(text) > limit or (sized and len(value) > _ITEMS):
        # The total is known for the outer container only (the inner ones were never rendered whole).
        text = text[:limit] + (_CUT_MARK.format(size=f"{len(value)} items") if sized else "...[cut]")
    return text


def one_line(text: str, limit: int = 400) -> str:
    """Another library's error text as one line (whitespace runs collapsed), cut to `limit` characters."""
    return cut(" ".join(str(text).split()), limit)


def cut(text: str, limit: int = MESSAGE_LIMIT_CHARS) -> str:
    """A text cut to `limit` characters (plus the marker) when longer; unchanged otherwise."""
    if len(text) <= limit:
        return text
    return text[:limit] + _CUT_MARK.format(size=f"{len(text)} chars")
