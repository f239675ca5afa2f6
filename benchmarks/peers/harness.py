"""Measuring one point, sweeping settings, and the Locust second opinion, for the peer benchmark.

Every point uses the same load client (benchmarks/lean_client.py, closed loop, batch-1 requests) in
this process, against whichever server is running. Around each point the harness also records the CPU
seconds used by the server's process tree and by this process (the client), and, where the server
exposes it, the mean executed batch size from its Prometheus metrics (servescope_batch_size,
Triton's nv_inference_count / nv_inference_exec_count).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import servers
import stats

log = logging.getLogger("peers.harness")
MULTI_WORKERS = servers.MULTI_WORKERS

BENCHMARKS = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCHMARKS.parent

# Settings tried per server by the sweep; the first entry is the default (servers.default_settings).
# Small on purpose: each entry costs a server start plus two short points.
SWEEP: dict[str, list[dict[str, Any]]] = {
    "servescope": [
        {"max_batch_size": 64, "max_queue_delay_us": 1000, "instances": 1, "workers": MULTI_WORKERS},
        {"max_batch_size": 64, "max_queue_delay_us": 0, "instances": 1, "workers": MULTI_WORKERS},
        {"max_batch_size": 64, "max_queue_delay_us": 250, "instances": 1, "workers": MULTI_WORKERS},
        {"max_batch_size": 64, "max_queue_delay_us": 4000, "instances": 1, "workers": MULTI_WORKERS},
        {"max_batch_size": 64, "max_queue_delay_us": 1000, "instances": 1, "workers": 3},
    ],
    "servescope-1w": [
        {"max_batch_size": 64, "max_queue_delay_us": 1000, "instances": 1, "workers": 1},
        {"max_batch_size": 64, "max_queue_delay_us": 0, "instances": 1, "workers": 1},
        {"max_batch_size": 64, "max_queue_delay_us": 250, "instances": 1, "workers": 1},
        {"max_batch_size": 64, "max_queue_delay_us": 4000, "instances": 1, "workers": 1},
        {
            "max_batch_size": 64,
            "max_queue_delay_us": 1000,
            "instances": 2,
            "intra_op_threads": 1,
            "workers": 1,
        },
    ],
    "triton": [
        {"max_batch_size": 64, "max_queue_delay_us": 1000, "instances": 1},
        {"max_batch_size": 64, "max_queue_delay_us": 0, "instances": 1},
        {"max_batch_size": 64, "max_queue_delay_us": 250, "instances": 1},
        {"max_batch_size": 64, "max_queue_delay_us": 4000, "instances": 1},
        {"max_batch_size": 64, "max_queue_delay_us": 1000, "instances": 2, "intra_op_threads": 1},
        # ONNX Runtime's spinning workers (off in servescope): faster wake-ups for a core's worth of CPU.
        {"max_batch_size": 64, "max_queue_delay_us": 1000, "instances": 1, "ort_spinning": True},
        {"max_batch_size": 64, "max_queue_delay_us": 250, "instances": 1, "ort_spinning": True},
    ],
    "mlserver": [
        {"max_batch_size": 64, "max_batch_time_s": 0.001, "parallel_workers": 0},
        {"max_batch_size": 64, "max_batch_time_s": 0.005, "parallel_workers": 0},
        {"max_batch_size": 64, "max_batch_time_s": 0.001, "parallel_workers": 1},
        {"max_batch_size": 64, "max_batch_time_s": 0.005, "parallel_workers": 1},
        {"max_batch_size": 64, "max_batch_time_s": 0.001, "parallel_workers": 0, "ort_spinning": True},
        {"max_batch_size": 64, "max_batch_time_s": 0.005, "parallel_workers": 0, "ort_spinning": True},
    ],
}


def load_client():
    """benchmarks/lean_client.py (owned by the server helper), as a package module or by path."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from benchmarks import lean_client
    except ImportError:
        sys.path.append(str(BENCHMARKS))
        import lean_client

    return lean_client


@dataclass
class PointSpec:
    concurrency: int
    duration_s: float
    warmup_s: float


def _scrape(url: str, model: str) -> dict[str, float]:
    """The model's executed samples and batches so far ({} when unreachable or not exported, e.g. MLServer).

    Read through the load tester's scrape, so servescope's and Triton's metrics mean the same thing here
    as in a campaign (servescope.metrics).
    """
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from loadtest import scrape

    snapshot = scrape.try_scrape(url)
    if snapshot is None or scrape.source_of(snapshot) is None:
        return {}
    empty = scrape.Snapshot(snapshot.taken_s, [])
    deltas = scrape.server_deltas(empty, snapshot, model)
    return {"samples": deltas.inferences, "batches": deltas.batches} if deltas else {}


def measure_point(
    server: servers.RunningServer, model: str, spec: PointSpec, seed: int = 0
) -> dict[str, Any]:
    """One closed-loop point with the lean client; returns a run record (stats.RUN_FIELDS and extras)."""
    import resource

    client = load_client()
    before_metrics = _scrape(server.metrics_url, model)
    server_cpu0 = servers.process_tree_cpu_s(server.process.pid)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    result = asyncio.run(
        client.run_load(
            server.grpc_target,
            model,
            concurrency=spec.concurrency,
            duration_s=spec.duration_s,
            warmup_s=spec.warmup_s,
            batch_size=1,
            seed=seed,
            connections=min(servers.CONNECTIONS, spec.concurrency),
        )
    )
    wall_s = time.perf_counter() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu1 = servers.process_tree_cpu_s(server.process.pid)
    after_metrics = _scrape(server.metrics_url, model)
    batches = after_metrics.get("batches", 0.0) - before_metrics.get("batches", 0.0)
    samples = after_metrics.get("samples", 0.0) - before_metrics.get("samples", 0.0)
    client_cpu_s = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "server": server.name,
        "concurrency": spec.concurrency,
        "completed": int(result.completed),
        "errors": {str(k): int(v) for k, v in result.errors.items()},
        "duration_s": float(result.duration_s),
        "throughput_rps": float(result.throughput_rps),
        "p50_s": _finite_or_none(result.p50_s),
        "p99_s": _finite_or_none(result.p99_s),
        # CPU over warm-up and measurement together, in cores (1.0 = one core busy).
        "server_cores": round((server_cpu1 - server_cpu0) / wall_s, 3),
        "client_cores": round(client_cpu_s / wall_s, 3),
        # Server CPU per answered request, warm-up included on both sides (cpu-ms per request).
        "server_cpu_ms_per_request": round(
            (server_cpu1 - server_cpu0) * 1e3 / (result.throughput_rps * wall_s), 4
        )
        if result.throughput_rps > 0
        else None,
        "mean_batch_size": round(samples / batches, 2) if batches > 0 else None,
    }


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def sweep(
    name: str, model_repository: Path, model: str, workdir: Path, point_s: float, warmup_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Try each SWEEP entry of one server at concurrency 1 and 32; return the chosen settings
    ({"single_client": ..., "load": ...}) and all entries with their figures."""
    entries: list[dict[str, Any]] = []
    for index, settings in enumerate(SWEEP[name]):
        entry: dict[str, Any] = {"settings": settings}
        try:
            server = servers.start(name, settings, model_repository, model, workdir / f"sweep-{name}-{index}")
        except servers.ServerStartError as exc:
            entry["error"] = str(exc).splitlines()[0]
            log.warning("sweep %s %s: %s", name, settings, entry["error"])
            entries.append(entry)
            continue
        try:
            one = measure_point(server, model, PointSpec(1, point_s, warmup_s))
            many = measure_point(server, model, PointSpec(32, point_s, warmup_s))
        finally:
            servers.stop(server)
        entry.update(
            c1_p50_s=one["p50_s"],
            c32_throughput_rps=many["throughput_rps"],
            c32_p99_s=many["p99_s"],
            c32_mean_batch_size=many["mean_batch_size"],
            errors=sum(one["errors"].values()) + sum(many["errors"].values()),
        )
        log.info(
            "sweep %s %s: c1 p50 %.2f ms, c32 %.0f req/s p99 %.1f ms",
            name,
            settings,
            (one["p50_s"] or math.nan) * 1e3,
            many["throughput_rps"],
            (many["p99_s"] or math.nan) * 1e3,
        )
        entries.append(entry)
    chosen = stats.choose_settings(entries)
    single = stats.best_c1_entry(entries) or entries[chosen]
    for i, entry in enumerate(entries):
        entry["chosen_for_load"] = i == chosen
        entry["chosen_for_single_client"] = entry is single
    return {"single_client": dict(single["settings"]), "load": dict(SWEEP[name][chosen])}, entries


def locust_point(
    server: servers.RunningServer, model: str, users: int, duration_s: float, workdir: Path
) -> dict:
    """Second opinion: `servescope load` (Locust) at one point; its step record, summarised."""
    out = workdir / f"locust-{server.name}"
    cmd = [
        str(Path(sys.executable).parent / "servescope"),
        "load",
        "--target",
        server.grpc_target,
        "--model",
        model,
        "--users",
        str(users),
        "--duration-s",
        str(duration_s),
        "--connections",
        str(servers.CONNECTIONS),
        "--output",
        str(out),
    ]
    record: dict[str, Any] = {"server": server.name, "users": users, "command": " ".join(cmd[1:])}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=duration_s * 4 + 120
    )
    if done.returncode != 0:
        record["error"] = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return record
    from servescope.results import read_steps

    steps, skipped = read_steps(out)
    if not steps:
        record["error"] = f"no step record in {out} ({skipped})"
        return record
    step = steps[-1]
    record.update(
        completed=step.completed,
        errors=dict(step.errors_by_code),
        duration_s=step.duration_s,
        throughput_rps=step.requests_per_s,
        p50_s=step.latency_s.p50 if step.latency_s else None,
        p99_s=step.latency_s.p99 if step.latency_s else None,
        generator_cores=step.cpu.generator_cores,
    )
    return record


def machine_facts() -> dict[str, Any]:
    import os
    import platform

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def dumps(data: Any) -> str:
    """JSON with NaN written as null (json.dumps would write the invalid token NaN)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=2, sort_keys=False) + "\n"
