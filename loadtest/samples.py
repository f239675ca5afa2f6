"""Per-request samples that each Locust process streams to disk, and the reader the driver uses.

One fixed-size binary record per request (numpy structured dtype SAMPLE_DTYPE): wall-clock completion
time, latency, gRPC status code, batch size and the generator's own delay before sending it. Records
are appended in chunks, so a reader that ignores a trailing partial record always sees whole requests,
even while the file grows. Wall-clock time (time.time) is used for completion because the driver and
every Locust process on this machine must agree on window boundaries; latency itself is measured with
perf_counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# delay_s: the generator's own delay before the request (see servescope.results.ClientTiming); NaN when
# there is none to speak of (a user's first request, a dropped arrival).
SAMPLE_DTYPE = np.dtype(
    [("end_s", "<f8"), ("latency_s", "<f8"), ("code", "<i4"), ("batch", "<i4"), ("delay_s", "<f8")]
)
SAMPLE_GLOB = "samples-*.bin"

# Status code values: gRPC codes by number, plus client-side outcomes that have no gRPC code.
CODE_OK = 0
CODE_CLIENT_DROPPED = -1  # open loop: the arrival found the in-flight cap reached and was not sent
CODE_CLIENT_ERROR = -2  # the client failed to build or send the request (not a gRPC status)

_GRPC_CODE_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
    CODE_CLIENT_DROPPED: "CLIENT_DROPPED",
    CODE_CLIENT_ERROR: "CLIENT_ERROR",
}


_CODES = {name: code for code, name in _GRPC_CODE_NAMES.items()}


def code_name(code: int) -> str:
    return _GRPC_CODE_NAMES.get(int(code), f"CODE_{int(code)}")


def code_of(name: str) -> int:
    """The code of a status code name (UNKNOWN's for a name that is not one)."""
    return _CODES.get(name, 2)


class SampleReader:
    """Reads every samples-*.bin file of a folder incrementally (only the new whole records each call)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[Path, int] = {}
        self._chunks: list[np.ndarray] = []

    def poll(self) -> None:
        for path in sorted(self.folder.glob(SAMPLE_GLOB)):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            whole = len(data) - len(data) % SAMPLE_DTYPE.itemsize
            if whole:
                self._chunks.append(np.frombuffer(data[:whole], dtype=SAMPLE_DTYPE).copy())
                self._offsets[path] = offset + whole

    def all(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.empty(0, dtype=SAMPLE_DTYPE)

    @property
    def files(self) -> int:
        return len(self._offsets)


@dataclass
class Tally:
    """Samples of one time range: OK latencies, errors by code name, inferences."""

    start_s: float
    end_s: float
    ok_latencies_s: np.ndarray
    errors_by_code: dict[str, int] = field(default_factory=dict)
    inferences: int = 0
    delays_s: np.ndarray = field(default_factory=lambda: np.empty(0))  # the generator's, where known

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def completed(self) -> int:
        return int(self.ok_latencies_s.size)

    @property
    def throughput_rps(self) -> float:
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0

    def percentile_s(self, q: float) -> float | None:
        return float(np.percentile(self.ok_latencies_s, q)) if self.completed else None


def tally(samples: np.ndarray, start_s: float, end_s: float) -> Tally:
    """Requests that completed (or failed) within [start_s, end_s)."""
    chosen = samples[(samples["end_s"] >= start_s) & (samples["end_s"] < end_s)]
    ok = chosen[chosen["code"] == CODE_OK]
    errors: dict[str, int] = {}
    failed = chosen[chosen["code"] != CODE_OK]
    if failed.size:
        codes, counts = np.unique(failed["code"], return_counts=True)
        errors = {code_name(c): int(n) for c, n in zip(codes, counts, strict=True)}
    return Tally(
        start_s=start_s,
        end_s=end_s,
        ok_latencies_s=ok["latency_s"].astype(np.float64),
        errors_by_code=errors,
        inferences=int(ok["batch"].sum()),
        delays_s=chosen["delay_s"][np.isfinite(chosen["delay_s"])].astype(np.float64),
    )
