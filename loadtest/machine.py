"""Facts about the machine a campaign ran on, and a short probe of its peak compute and memory speed."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
import time

import numpy as np

from servescope.results import MachineInfo, PeakProbe

PACKAGES = (
    "servescope",
    "numpy",
    "onnxruntime-gpu",
    "onnxruntime",
    "grpcio",
    "protobuf",
    "locust",
    "gevent",
    "prometheus-client",
    "psutil",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The first GPU's name through NVML, or None where there is no NVIDIA GPU or driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver or no GPU: all mean "no GPU" here
        return None
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return None
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine_info() -> MachineInfo:
    try:
        import psutil

        memory: int | None = int(psutil.virtual_memory().total)
    except ImportError:
        memory = None
    return MachineInfo(
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        memory_bytes=memory,
        gpu_name=gpu_name(),
        platform=platform.platform(),
        python=sys.version.split()[0],
        packages=package_versions(),
    )


def _best_rate(work: float, run: object, budget_s: float) -> float:
    """Best work/second over repeated runs within budget_s (the best run is the least disturbed)."""
    best = 0.0
    deadline = time.perf_counter() + budget_s
    while True:
        started = time.perf_counter()
        run()  # type: ignore[operator]
        elapsed = time.perf_counter() - started
        best = max(best, work / elapsed)
        if time.perf_counter() >= deadline:
            return best


def peak_probe(budget_s: float = 1.0, matrix: int = 512, copy_mib: int = 64) -> PeakProbe:
    """float32 matmul FLOP/s and large-copy bytes/s (read + write counted), best of a short run each."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((matrix, matrix), dtype=np.float32)
    b = rng.standard_normal((matrix, matrix), dtype=np.float32)
    a @ b  # first call loads BLAS and its threads
    flops = _best_rate(2.0 * matrix**3, lambda: a @ b, budget_s / 2)
    src = np.ones(copy_mib * 2**20, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    copy_bytes = 2.0 * src.nbytes
    bandwidth = _best_rate(copy_bytes, lambda: np.copyto(dst, src), budget_s / 2)
    return PeakProbe(matmul_flops_per_s=flops, memory_bytes_per_s=bandwidth, device="cpu")
