"""The peer benchmark's second driver: NVIDIA perf_analyzer, the client every Triton user measures with.

One point = one perf_analyzer run (closed loop, batch-1 requests over gRPC, its default synchronous
mode: one thread per concurrent request) whose three fixed windows cover warm-up and measurement.
From its per-request export, only calls sent after the warm-up and answered before the last window
boundary count, as with the lean client. Token rows come from the same synthetic corpus as the lean
client's (servescope.corpus), written once as perf_analyzer's --input-data JSON. The client's CPU is
perf_analyzer's own (wait4 of the child), not this process's.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from loadtest.perf_analyzer import Located, PerfAnalyzerError, Step, locate, run  # noqa: E402
from loadtest.perf_analyzer_export import read_export  # noqa: E402
from loadtest.samples import CODE_OK, code_name  # noqa: E402

DRIVERS = ("lean", "perf_analyzer")
INPUT_ROWS = 64
MODE = "perf_analyzer 2.48 closed loop (--concurrency-range C, sync), batch-1 gRPC, 3 fixed windows"


def input_file(folder: Path, model_input: str = "tokens", seed: int = 0) -> Path:
    """perf_analyzer --input-data JSON with INPUT_ROWS synthetic reviews (token ids), written once."""
    from servescope.corpus import SEQUENCE_LENGTH, pad_sequences, synthetic_reviews

    path = folder / f"perf-analyzer-input-{seed}.json"
    if not path.exists():
        sequences, _ = synthetic_reviews(INPUT_ROWS, seed)
        rows = pad_sequences(sequences, maxlen=SEQUENCE_LENGTH)
        path.write_text(json.dumps({"data": [{model_input: row.tolist()} for row in rows]}))
    return path


def located() -> Located:
    """The installed perf_analyzer; a SystemExit with the install line when it is missing."""
    try:
        return locate()
    except PerfAnalyzerError as exc:
        raise SystemExit(f"--drivers perf_analyzer: {exc}") from None


def measure(
    binary: Located,
    server: Any,
    model: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    folder: Path,
) -> dict[str, Any]:
    """One point; a run record like harness.measure_point's, plus "driver"."""
    import harness
    import servers

    folder.mkdir(parents=True, exist_ok=True)
    name = f"pa-{server.name}-c{concurrency}-{time.monotonic_ns()}"
    window_ms = max(1, math.ceil((warmup_s + duration_s) * 1000 / 3))
    step = Step(
        model=model,
        url=server.grpc_target,
        export_file=folder / f"{name}.json",
        concurrency=concurrency,
        input_data=str(input_file(folder)),
        measurement_interval_ms=window_ms,
    )
    before = harness._scrape(server.metrics_url, model)
    server_cpu0 = servers.process_tree_cpu_s(server.process.pid)
    record: dict[str, Any] = {"server": server.name, "concurrency": concurrency, "driver": "perf_analyzer"}
    try:
        finished = run(binary, step, folder / f"{name}.txt", timeout_s=(warmup_s + duration_s) * 4 + 60)
        export = read_export(step.export_file, step.batch)
    except PerfAnalyzerError as exc:
        lines = str(exc).splitlines()
        record.update(_failed(duration_s), error=lines[0], error_lines=lines[1:])
        return record
    server_cpu_s = servers.process_tree_cpu_s(server.process.pid) - server_cpu0
    after = harness._scrape(server.metrics_url, model)
    record.update(_figures(export, warmup_s))
    batches = after.get("batches", 0.0) - before.get("batches", 0.0)
    samples = after.get("samples", 0.0) - before.get("samples", 0.0)
    answered = len(export.samples)
    record.update(
        server_cores=round(server_cpu_s / finished.wall_s, 3),
        client_cores=round(finished.cpu_s / finished.wall_s, 3),
        server_cpu_ms_per_request=round(server_cpu_s * 1e3 / answered, 4) if answered else None,
        client_cpu_ms_per_request=round(finished.cpu_s * 1e3 / answered, 4) if answered else None,
        mean_batch_size=round(samples / batches, 2) if batches > 0 else None,
    )
    return record


def _figures(export: Any, warmup_s: float) -> dict[str, Any]:
    boundaries = export.experiments[-1].window_boundaries_s
    start_s, end_s = boundaries[0] + warmup_s, boundaries[-1]
    samples = export.samples
    sent_s = samples["end_s"] - np.nan_to_num(samples["latency_s"])
    inside = samples[(sent_s >= start_s) & (samples["end_s"] <= end_s)]
    ok = inside[inside["code"] == CODE_OK]
    errors: dict[str, int] = {}
    for code in inside["code"][inside["code"] != CODE_OK]:
        errors[code_name(code)] = errors.get(code_name(code), 0) + 1
    duration_s = end_s - start_s
    return {
        "completed": len(ok),
        "errors": errors,
        "duration_s": round(duration_s, 3),
        "throughput_rps": len(ok) / duration_s if duration_s > 0 else 0.0,
        "p50_s": float(np.percentile(ok["latency_s"], 50)) if len(ok) else None,
        "p99_s": float(np.percentile(ok["latency_s"], 99)) if len(ok) else None,
    }


def _failed(duration_s: float) -> dict[str, Any]:
    return {
        "completed": 0,
        "errors": {"PERF_ANALYZER_FAILED": 1},
        "duration_s": duration_s,
        "throughput_rps": 0.0,
        "p50_s": None,
        "p99_s": None,
    }
