"""Errors that the command line turns into exit codes (docs/architecture.md: 2 usage, 1 anything else)."""

from __future__ import annotations


class UsageError(Exception):
    """Bad command-line input: a missing file, a wrong value, an existing output. Exit code 2."""


class CommandError(Exception):
    """The command could not do its job for a reason outside the arguments. Exit code 1."""
