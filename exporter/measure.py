"""What the exporter measures on each ONNX variant with ONNX Runtime's CPU execution provider."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from exporter.convert import INPUT_NAME


def cpu_session(model_path: Path) -> Any:
    """An ONNX Runtime session pinned to the CPU provider (onnxruntime-gpu would try CUDA first)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def run_batches(session: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities for every row of x, float32 [n, 1]."""
    outputs = [
        session.run(None, {INPUT_NAME: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((probabilities.reshape(-1) >= 0.5).astype(np.int32) == labels.reshape(-1)))


def initializer_elements(model: Any) -> int:
    """Elements of every initializer: weights plus constants, quantization scales and zero points."""
    return int(sum(int(np.prod(init.dims, dtype=np.int64)) for init in model.graph.initializer))


def weight_bytes(model: Any) -> int:
    """Bytes of every initializer as stored (int8 weights: 1 byte, fp16: 2, fp32: 4)."""
    from onnx import numpy_helper

    return int(sum(numpy_helper.to_array(init).nbytes for init in model.graph.initializer))


def median_latency_s(
    session: Any, x: np.ndarray, batch_size: int, *, min_runs: int = 10, budget_s: float = 0.5
) -> float:
    """Median wall time of one `session.run` at `batch_size`, after three warm-up runs.

    Runs at least `min_runs` times and keeps going until `budget_s` is spent (at most 200 runs).
    """
    rows = np.resize(x, (batch_size, x.shape[1])).astype(np.int32)
    feed = {INPUT_NAME: rows}
    for _ in range(3):
        session.run(None, feed)
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < min_runs or (time.perf_counter() < deadline and len(samples) < 200):
        start = time.perf_counter()
        session.run(None, feed)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
