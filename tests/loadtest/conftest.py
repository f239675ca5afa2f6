"""Fixtures for the load tester's tests: a real `servescope serve` on port 0 from the shared repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.server_proc import ManagedServer, start_server
from servescope.settings import ServeFlags


@pytest.fixture(scope="module")
def running_server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedServer]:
    """A batching server for sentiment_fp32 and sentiment_int8, shared by the tests of one module."""
    server = start_server(
        model_repository,
        ["sentiment_fp32", "sentiment_int8"],
        ServeFlags(batching=True, max_queue_delay_us=1000),
        tmp_path_factory.mktemp("server"),
        "server",
    )
    try:
        yield server
    finally:
        server.stop()
