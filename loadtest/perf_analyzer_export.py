"""perf_analyzer's output read back: its per-request profile export as samples, its printed summary.

The export (`--profile-export-file`, perf_analyzer 2.48) is JSON: `version`, and per experiment its
`requests`, each with `timestamp` (sent) and `response_timestamps` (one per response; several on a
decoupled stream) in integer nanoseconds of the system clock (std::chrono::system_clock, the Unix
epoch: the same clock as Python's time.time(), checked around real runs in
tests/compat/test_perf_analyzer.py), plus `window_boundaries` in the same clock. Response tensors are
written as raw bytes inside JSON strings, so the file is not valid UTF-8 and is decoded leniently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.perf_analyzer import PerfAnalyzerError, last_lines
from loadtest.samples import CODE_CLIENT_ERROR, CODE_OK, SAMPLE_DTYPE
from servescope.echo import shown

READ_VERSIONS = ("2.48.0",)  # export layouts read and checked here; others are read if the fields are there
_NS_PER_S = 1e9


@dataclass(frozen=True)
class Experiment:
    mode: str  # "concurrency" or "request_rate"
    value: float
    window_boundaries_s: tuple[float, ...]  # wall clock, seconds


@dataclass(frozen=True)
class Export:
    version: str
    experiments: tuple[Experiment, ...]
    samples: np.ndarray  # SAMPLE_DTYPE, every request of every experiment, in the export's order (not sorted)


def read_export(path: Path, batch: int) -> Export:
    """The per-request samples of a profile export (batch: the step's -b, which the export lacks)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise PerfAnalyzerError(f"perf_analyzer wrote no profile export at {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PerfAnalyzerError(f"perf_analyzer profile export {path} is not JSON: {exc}") from None
    version = document.get("version") if isinstance(document, dict) else None
    shown_version = shown(version) if version is not None else "(no version)"
    try:
        return _read(document, str(version), batch)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PerfAnalyzerError(
            f"perf_analyzer profile export {path} of version {shown_version} cannot be read "
            f"(read here: {', '.join(READ_VERSIONS)}): {type(exc).__name__}: {shown(str(exc))}"
        ) from None


def _read(document: dict[str, Any], version: str, batch: int) -> Export:
    experiments = []
    rows: list[tuple[float, float, int, int, float]] = []
    for entry in document["experiments"]:
        boundaries = tuple(int(ns) / _NS_PER_S for ns in entry.get("window_boundaries", ()))
        experiments.append(
            Experiment(str(entry["experiment"]["mode"]), float(entry["experiment"]["value"]), boundaries)
        )
        for request in entry["requests"]:
            sent_ns = int(request["timestamp"])
            responses = request["response_timestamps"]
            if not isinstance(responses, list):
                raise TypeError(f"response_timestamps is {type(responses).__name__}, not a list")
            if responses:
                last_ns = int(responses[-1])
                rows.append((last_ns / _NS_PER_S, (last_ns - sent_ns) / _NS_PER_S, CODE_OK, batch, np.nan))
            else:  # sent, never answered
                rows.append((sent_ns / _NS_PER_S, np.nan, CODE_CLIENT_ERROR, batch, np.nan))
    samples = np.array(rows, dtype=SAMPLE_DTYPE) if rows else np.empty(0, dtype=SAMPLE_DTYPE)
    return Export(version, tuple(experiments), samples)


@dataclass(frozen=True)
class Summary:
    """The figures perf_analyzer prints for its last measurement (client and server side)."""

    client_request_count: int
    throughput_per_s: float  # inferences per second
    server_inference_count: int | None  # from the server's ModelStatistics; None when not printed
    server_execution_count: int | None
    server_success_count: int | None


_CLIENT = {
    "client_request_count": re.compile(r"^\s*Request count:\s*(\d+)", re.M),
    "throughput_per_s": re.compile(r"^\s*Throughput:\s*([\d.]+) infer/sec", re.M),
}
_SERVER = {
    "server_inference_count": re.compile(r"^\s*Inference count:\s*(\d+)", re.M),
    "server_execution_count": re.compile(r"^\s*Execution count:\s*(\d+)", re.M),
    "server_success_count": re.compile(r"^\s*Successful request count:\s*(\d+)", re.M),
}


def read_summary(output: str) -> Summary:
    """The last measurement's figures; PerfAnalyzerError with the last lines when they are not there."""
    values: dict[str, Any] = {}
    for name, pattern in _CLIENT.items():
        found = pattern.findall(output)
        if not found:
            raise PerfAnalyzerError(
                "perf_analyzer printed no client summary (no 'Request count' / 'Throughput' lines)",
                last_lines(output),
            )
        values[name] = float(found[-1]) if name == "throughput_per_s" else int(found[-1])
    for name, pattern in _SERVER.items():
        found = pattern.findall(output)
        values[name] = int(found[-1]) if found else None
    return Summary(**values)
