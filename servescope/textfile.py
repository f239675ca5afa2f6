"""A small UTF-8 text file read with a bound on its size: what the model repository's files and the
campaign files are read with, each caller naming the file in its own error."""

from __future__ import annotations

from pathlib import Path


class FileTooLarge(Exception):
    """The file holds more than the bound; nothing past the bound was read."""


def read_bounded_utf8(path: Path, limit_bytes: int) -> str:
    """At most limit_bytes of `path` as text. Raises OSError when it cannot be read, FileTooLarge past the
    bound, and UnicodeDecodeError (its `object` the bytes read) when it is not UTF-8."""
    with path.open("rb") as handle:
        data = handle.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise FileTooLarge(f"{path}: larger than {limit_bytes} bytes")
    return data.decode("utf-8")
