"""`servescope serve --device DEV` in a child process, measured by the lean gRPC client on the same
machine over several connections, with the GPU gauges (NVML, through /metrics) sampled during each step.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.gpu.budget import Section
from benchmarks.lean_client import run_load
from benchmarks.serve_bench import ServerProcess
from loadtest import scrape

CONNECTIONS = 8  # at most one per concurrent call: SO_REUSEPORT balances connections over the workers
GAUGE_PERIOD_S = 0.5
NO_GPU_GAUGES = "no servescope_gpu_* gauges in /metrics (NVML finds no GPU)"


@dataclass(frozen=True)
class ServerSetup:
    """One server configuration: batching on or off, and how many worker processes."""

    batching: bool
    workers: int

    def label(self) -> str:
        return f"batching {'on' if self.batching else 'off'}, {self.workers} worker(s)"

    def flags(self, device: str) -> list[str]:
        return ["--device", device, "--workers", str(self.workers)] + (
            [] if self.batching else ["--no-batching"]
        )


@dataclass
class ServedStep:
    batching: bool
    workers: int
    concurrency: int
    connections: int
    completed: int
    errors: dict[str, int]
    throughput_rps: float
    p50_s: float
    p99_s: float
    server_mean_batch_size: float
    server_cores: float
    gpu_utilization_ratio: float | None
    gpu_memory_used_bytes: float | None
    gpu_power_watts: float | None


@dataclass
class ServedResult:
    device: str
    model: str
    duration_s: float
    warmup_s: float
    steps: list[ServedStep] = field(default_factory=list)
    provider: dict[str, str] = field(default_factory=dict)  # setup label -> provider in model_info
    gpu_gauges: str = NO_GPU_GAUGES
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class GaugeSampler:
    """Scrapes /metrics every GAUGE_PERIOD_S in a thread: NVML's utilization is a recent-window reading,
    so one scrape per step would see one instant."""

    def __init__(self, server: ServerProcess) -> None:
        self._server = server
        self._stop = threading.Event()
        self.snapshots: list[scrape.Snapshot] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> GaugeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(GAUGE_PERIOD_S):
            try:
                self.snapshots.append(self._server.snapshot())
            except Exception:  # a scrape that failed mid-step: the step keeps its other samples
                continue


def _step(
    server: ServerProcess,
    model: str,
    setup: ServerSetup,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
) -> ServedStep:
    before = server.snapshot()
    connections = min(CONNECTIONS, concurrency)
    with GaugeSampler(server) as sampler:
        result = asyncio.run(
            run_load(
                f"127.0.0.1:{server.grpc_port}",
                model,
                concurrency=concurrency,
                duration_s=duration_s,
                warmup_s=warmup_s,
                connections=connections,
            )
        )
    after = server.snapshot()
    deltas = scrape.server_deltas(before, after, model)
    samples, batches = (deltas.inferences, deltas.batches) if deltas else (0.0, 0.0)
    cpu_s = (scrape.process_cpu_seconds(after) or 0.0) - (scrape.process_cpu_seconds(before) or 0.0)
    wall_s = after.taken_s - before.taken_s
    gpu = scrape.gpu_usage(sampler.snapshots or [after])
    return ServedStep(
        batching=setup.batching,
        workers=setup.workers,
        concurrency=concurrency,
        connections=connections,
        completed=result.completed,
        errors=result.errors,
        throughput_rps=result.throughput_rps,
        p50_s=result.p50_s,
        p99_s=result.p99_s,
        server_mean_batch_size=samples / batches if batches else 0.0,
        server_cores=cpu_s / wall_s if wall_s > 0 else 0.0,
        gpu_utilization_ratio=gpu.utilization_ratio if gpu else None,
        gpu_memory_used_bytes=gpu.memory_used_bytes if gpu else None,
        gpu_power_watts=gpu.power_watts if gpu else None,
    )


def measure(
    repository: Path,
    model: str,
    device: str,
    setups: list[tuple[ServerSetup, list[int]]],
    duration_s: float,
    warmup_s: float,
    section: Section,
) -> ServedResult:
    """Each server setup at its concurrencies while the section has time; a server that does not start
    is one skipped line, not the end of the run."""
    result = ServedResult(device=device, model=model, duration_s=duration_s, warmup_s=warmup_s)
    for setup, concurrencies in setups:
        if section.left_s() < warmup_s + duration_s:
            result.skipped.append(f"{setup.label()}: section budget spent")
            continue
        section.say(f"starting servescope serve --device {device}, {setup.label()}")
        try:
            server = ServerProcess(
                repository, model, setup.flags(device), ready_timeout_s=max(10.0, section.left_s())
            )
        except RuntimeError as exc:
            line = f"{setup.label()}: server did not start: {exc}"
            result.skipped.append(line)
            section.say(line)
            continue
        try:
            snapshot = server.snapshot()
            result.provider[setup.label()] = scrape.model_label(snapshot, model, "provider") or "unknown"
            for concurrency in concurrencies:
                if section.left_s() < warmup_s + duration_s:
                    result.skipped.append(f"{setup.label()} concurrency {concurrency}: section budget spent")
                    continue
                step = _step(server, model, setup, concurrency, duration_s, warmup_s)
                result.steps.append(step)
                if step.gpu_utilization_ratio is not None:
                    result.gpu_gauges = "servescope_gpu_* gauges read from /metrics every 0.5 s"
                gpu = "" if step.gpu_utilization_ratio is None else f", GPU {step.gpu_utilization_ratio:.0%}"
                section.say(
                    f"{setup.label()} concurrency {concurrency:>4}: {step.throughput_rps:>8.0f} req/s, "
                    f"p50 {step.p50_s * 1e3:.2f} ms, p99 {step.p99_s * 1e3:.2f} ms, "
                    f"mean batch {step.server_mean_batch_size:.1f}, errors {sum(step.errors.values())}{gpu}"
                )
        finally:
            server.stop()
    return result
