"""Fixtures for the compatibility tests: the installed perf_analyzer and a real servescope server.

perf_analyzer is installed by `make test` (deploy/perf_analyzer/ensure-perf-analyzer.sh), so these
tests fail, not skip, when it is missing; SERVESCOPE_SKIP_PERF_ANALYZER=1 skips them, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.perf_analyzer import Located, PerfAnalyzerMissing, locate
from tests.server.conftest import RunningServer, server_options

SKIP_ENV = "SERVESCOPE_SKIP_PERF_ANALYZER"


@pytest.fixture(scope="session")
def perf_analyzer() -> Located:
    if os.environ.get(SKIP_ENV):
        pytest.skip(f"{SKIP_ENV} is set: the perf_analyzer compatibility tests are skipped")
    try:
        return locate()
    except PerfAnalyzerMissing as exc:
        pytest.fail(f"{exc} (or set {SKIP_ENV}=1 to skip these tests)")


@pytest.fixture(scope="module")
def served(model_repository: Path) -> Iterator[RunningServer]:
    """sentiment_fp32 on 127.0.0.1 (gRPC, REST and metrics on free ports)."""
    running = RunningServer(server_options(model_repository, models=("sentiment_fp32",)))
    yield running
    running.close()
