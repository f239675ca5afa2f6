"""`servescope load` in the test's own process, through the command's own path (argument parsing too)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loadtest import cli_load
from loadtest.connection import Connection

FLAG_NAMES = {"rate_rps": "rate"}  # keyword -> flag, where they differ


def flags_of(connection: Connection) -> list[str]:
    """The command-line flags that give `connection`."""
    flags = ["--protocol", connection.protocol, "--model-version", connection.model_version]
    flags += ["--streaming"] if connection.streaming else []
    for name in ("tls_ca", "tls_cert", "tls_key"):
        if getattr(connection, name) is not None:
            flags += [f"--{name.replace('_', '-')}", getattr(connection, name)]
    for header, value in connection.headers.items():
        flags += ["--header", f"{header}: {value}"]
    return flags


def run_load(output: Path, connection: Connection | None = None, **options: Any) -> Path:
    """`servescope load --output OUTPUT --NAME VALUE ...` for each keyword (None: left out), quietly.

    Raises what the command's run_load raises (CampaignError, CampaignInterrupted), not exit codes.
    """
    flags = ["--output", str(output), *flags_of(connection or Connection())]
    for name, value in options.items():
        if value is not None:
            flags += [f"--{FLAG_NAMES.get(name, name).replace('_', '-')}", str(value)]
    parser = argparse.ArgumentParser()
    cli_load.add_arguments(parser)
    return cli_load.load(parser.parse_args(flags), progress=lambda _line: None)
