"""Serving benchmark: the in-process ONNX Runtime ceiling against servescope, batching on and off.

Measures, on this machine, in one run:
  1. in-process ONNX Runtime throughput and latency at batch sizes 1..64 (the ceiling);
  2. served throughput and p50/p99 at concurrency 1, 8, 32, 64 with batch-1 requests: batching on with
     one worker process and with MULTI_WORKERS, batching off with MULTI_WORKERS (`servescope serve` in a
     child process, the lean async client in this one, CONNECTIONS connections for every run);
  3. ratios: MULTI_WORKERS / 1 worker at concurrency 32 and 64, batching on/off throughput at
     concurrency 32, served/in-process throughput at concurrency 64, and the latency serving adds at
     concurrency 1 (client p50 - in-process p50, batch 1);
  4. for context, the same client against a bare grpc.aio echo server: what gRPC alone allows here.
Prints a table and writes JSON (benchmarks/results/serve_bench.json).

    .venv/bin/python benchmarks/serve_bench.py --model-repository models
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.lean_client import LoadResult, run_load  # noqa: E402
from benchmarks.report import model_missing, run_header, write_report  # noqa: E402
from loadtest import scrape  # noqa: E402
from loadtest.server_proc import ServerStartError, serve_command, spawn_ready, stop_server  # noqa: E402
from servescope.cores import available_cores  # noqa: E402
from servescope.corpus import pad_sequences, synthetic_reviews  # noqa: E402
from servescope.settings import ServeFlags, serve_argv  # noqa: E402

IN_PROCESS_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
CONCURRENCIES = (1, 8, 32, 64)
CONNECTIONS = 8  # client connections (at most one per concurrent call): spread over the workers
# The multi-worker runs: `--workers auto` where that is more than one, else two (auto is 1 on 2 cores).
MULTI_WORKERS = max(2, available_cores() // 2)


def measure_in_process(repository: Path, model: str, seconds_per_size: float) -> list[dict[str, float]]:
    """ONNX Runtime alone, with the server's own session options, one batch after another."""
    from server.model import ModelRunner, RuntimeOptions
    from servescope.repository import read_model

    runner = ModelRunner(read_model(repository / model), None, RuntimeOptions(device="auto"))
    sequences, _ = synthetic_reviews(max(IN_PROCESS_BATCH_SIZES), seed=1)
    tokens = pad_sequences(sequences)
    rows = []
    try:
        for size in IN_PROCESS_BATCH_SIZES:
            batch = [np.ascontiguousarray(tokens[:size])]
            for _ in range(3):
                runner.run_sync(batch)
            latencies = []
            stop_s = time.perf_counter() + seconds_per_size
            while time.perf_counter() < stop_s or len(latencies) < 5:
                start = time.perf_counter()
                runner.run_sync(batch)
                latencies.append(time.perf_counter() - start)
            p50_s = float(np.median(latencies))
            rows.append(
                {
                    "batch_size": size,
                    "p50_s": p50_s,
                    # From the median: on a shared machine the mean is dragged by other processes' spikes.
                    "inferences_per_s": size / p50_s,
                    "inferences_per_s_mean": size * len(latencies) / float(np.sum(latencies)),
                    "provider": runner.provider,
                }
            )
    finally:
        runner.close()
    return rows


class ServerProcess:
    """`servescope serve` in a child process, ready when its ready file appears."""

    def __init__(self, repository: Path, model: str, extra: list[str], ready_timeout_s: float = 120) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="serve-bench-")
        folder = Path(self._folder.name)
        command = serve_argv(serve_command("--log-level", "WARNING"), str(repository), [model], ServeFlags(),
                             ready_file=str(folder / "ready.json")) + extra  # fmt: skip
        try:
            self.process, ports, _log = spawn_ready(command, folder / "ready.json", folder / "server.log",
                                                    ready_timeout_s)  # fmt: skip
        except ServerStartError:
            self._folder.cleanup()
            raise
        self.grpc_port = ports["grpc_port"]
        self.metrics_port = ports["metrics_port"]
        self.http_port = ports.get("http_port")

    def snapshot(self) -> scrape.Snapshot:
        """The server's /metrics now."""
        return scrape.scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def stop(self) -> None:
        stop_server(self.process, grace_s=60.0)
        self._folder.cleanup()


async def _echo_server(ready: Any) -> None:
    """A bare grpc.aio ModelInfer that answers a constant: the cost of gRPC itself, no model, no batching."""
    import grpc

    from servescope.protocol import grpc_service_pb2 as pb
    from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

    response = pb.ModelInferResponse(model_name="echo")
    response.outputs.add(name="probability", datatype="FP32", shape=[1, 1])
    response.raw_output_contents.append(b"\0\0\0\0")

    class Echo(pb_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request: Any, context: Any) -> Any:
            return response

    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)
    ready.put(server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    await server.wait_for_termination()


def _run_echo_server(ready: Any) -> None:
    asyncio.run(_echo_server(ready))


def measure_grpc_floor(duration_s: float, warmup_s: float) -> list[dict[str, Any]]:
    """The same client against the echo server, at concurrency 1 and 32: the ceiling gRPC alone allows."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    process = context.Process(target=_run_echo_server, args=(ready,), daemon=True)
    process.start()
    try:
        port = ready.get(timeout=60)
        rows = []
        for concurrency in (1, 32):
            result = asyncio.run(
                run_load(f"127.0.0.1:{port}", "echo", concurrency=concurrency, duration_s=duration_s,
                         warmup_s=warmup_s)
            )  # fmt: skip
            rows.append(
                {"concurrency": concurrency, "throughput_rps": result.throughput_rps, "p50_s": result.p50_s,
                 "p99_s": result.p99_s}
            )  # fmt: skip
        return rows
    finally:
        process.terminate()
        process.join(10)


def measure_served(
    repository: Path, model: str, extra: list[str], duration_s: float, warmup_s: float
) -> list[dict[str, Any]]:
    import psutil

    server = ServerProcess(repository, model, extra)
    processes = 1 + len(psutil.Process(server.process.pid).children(recursive=True))
    rows = []
    try:
        for concurrency in CONCURRENCIES:
            before = server.snapshot()
            result: LoadResult = asyncio.run(
                run_load(
                    f"127.0.0.1:{server.grpc_port}", model, concurrency=concurrency, duration_s=duration_s,
                    warmup_s=warmup_s, connections=min(CONNECTIONS, concurrency),
                )
            )  # fmt: skip
            after = server.snapshot()
            # Server-side deltas cover warm-up too: they describe the step, not the measured window exactly.
            deltas = scrape.server_deltas(before, after, model)
            samples, batches = (deltas.inferences, deltas.batches) if deltas else (0.0, 0.0)
            cpu_s = (scrape.process_cpu_seconds(after) or 0.0) - (scrape.process_cpu_seconds(before) or 0.0)
            wall_s = after.taken_s - before.taken_s
            rows.append(
                {
                    "concurrency": concurrency,
                    **result.row(),
                    "server_mean_batch_size": samples / batches if batches else 0.0,
                    "server_cpu_s_per_inference": cpu_s / samples if samples else 0.0,
                    "server_cores": cpu_s / wall_s if wall_s > 0 else 0.0,
                    "server_processes": processes,
                }
            )
    finally:
        server.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if model_missing("serve_bench", args.model_repository, args.model):
        return 2
    on_flags = (
        [] if args.max_queue_delay_us is None else ["--max-queue-delay-us", str(args.max_queue_delay_us)]
    ) + list(args.serve_flag)
    started = time.time()
    load_at_start = os.getloadavg()
    in_process = measure_in_process(args.model_repository, args.model, args.in_process_s)
    served_one = measure_served(
        args.model_repository, args.model, [*on_flags, "--workers", "1"], args.duration_s, args.warmup_s
    )
    served_on = measure_served(
        args.model_repository,
        args.model,
        [*on_flags, "--workers", str(MULTI_WORKERS)],
        args.duration_s,
        args.warmup_s,
    )
    off_flags = ["--no-batching", "--workers", str(MULTI_WORKERS)]
    served_off = measure_served(args.model_repository, args.model, off_flags, args.duration_s, args.warmup_s)
    grpc_floor = measure_grpc_floor(min(args.duration_s, 4.0), args.warmup_s)
    ratios = _ratios(in_process, served_one, served_on, served_off)
    report = {
        **run_header(started),
        "model": args.model,
        "batching_on_flags": on_flags,
        "in_process": in_process,
        "connections": CONNECTIONS,
        "multi_workers": MULTI_WORKERS,
        "served": {"batching_on_1_worker": served_one, "batching_on": served_on, "batching_off": served_off},
        "grpc_echo_floor": grpc_floor,
        "ratios": ratios,
        "targets": {"served_vs_in_process_throughput_c64": ">= 0.65", "added_latency_c1_s": "<= 0.001"},
        "wall_s": time.time() - started,
        # Other processes share the cores; the 1-minute load average shows how much (2 cores: 2 is full).
        "load_average_1m": {"start": load_at_start[0], "end": os.getloadavg()[0]},
    }
    print_report(report)
    write_report(report, args.output)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    default_repository = Path(os.environ.get("SERVESCOPE_MODEL_REPOSITORY", "models"))
    parser.add_argument("--model-repository", type=Path, default=default_repository,
                        help="model repository made by `servescope export`")  # fmt: skip
    parser.add_argument("--model", default="sentiment_fp32", help="model to measure")
    parser.add_argument("--duration-s", type=float, default=6.0, help="measured seconds per served step")
    parser.add_argument("--warmup-s", type=float, default=1.5, help="unmeasured seconds before each step")
    parser.add_argument("--in-process-s", type=float, default=1.5, help="seconds per in-process batch size")
    parser.add_argument("--max-queue-delay-us", type=int, default=None,
                        help="batching delay for the 'on' runs (None: the model's config.pbtxt)")  # fmt: skip
    parser.add_argument("--serve-flag", action="append", default=[], metavar="FLAG",
                        help="extra `servescope serve` flag for the batching-on runs, repeatable "
                        "(e.g. --serve-flag=--no-adaptive-delay)")  # fmt: skip
    default_output = REPO_ROOT / "benchmarks" / "results" / "serve_bench.json"
    parser.add_argument("--output", type=Path, default=default_output, help="JSON results file")
    return parser


def _ratios(
    in_process: list[dict[str, Any]],
    served_one: list[dict[str, Any]],
    served_on: list[dict[str, Any]],
    served_off: list[dict[str, Any]],
) -> dict[str, float]:
    """The figures the benchmark is run for, each a ratio or a difference of two measured side by side."""
    by_conc_one = {row["concurrency"]: row for row in served_one}
    by_conc_on = {row["concurrency"]: row for row in served_on}
    by_conc_off = {row["concurrency"]: row for row in served_off}
    ceiling = max(row["inferences_per_s"] for row in in_process)
    return {
        "workers_n_vs_1_throughput_c32": by_conc_on[32]["throughput_rps"] / by_conc_one[32]["throughput_rps"],
        "workers_n_vs_1_throughput_c64": by_conc_on[64]["throughput_rps"] / by_conc_one[64]["throughput_rps"],
        "batching_on_off_throughput_c32": by_conc_on[32]["throughput_rps"]
        / by_conc_off[32]["throughput_rps"],
        "served_vs_in_process_throughput_c64": by_conc_on[64]["throughput_rps"] / ceiling,
        "added_latency_c1_s": by_conc_on[1]["p50_s"] - in_process[0]["p50_s"],
        "added_latency_c1_batching_on_s": by_conc_on[1]["p50_s"] - in_process[0]["p50_s"],
        "added_latency_c1_batching_off_s": by_conc_off[1]["p50_s"] - in_process[0]["p50_s"],
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"\nin-process ONNX Runtime ({report['model']}, {report['in_process'][0]['provider']})")
    print(f"{'batch':>6} {'p50 ms':>9} {'inferences/s':>13}   (batch / p50)")
    for row in report["in_process"]:
        print(f"{row['batch_size']:>6} {row['p50_s'] * 1e3:>9.3f} {row['inferences_per_s']:>13.0f}")
    print("\nserved, batch-1 requests, lean async gRPC client")
    print(
        f"{'server':>14} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'mean batch':>10} {'server cores':>12} {'server CPU ms/inf':>17}"
    )
    n = report["multi_workers"]
    names = {
        "batching_on_1_worker": "on, 1 worker",
        "batching_on": f"on, {n} workers",
        "batching_off": f"off, {n} workers",
    }
    for mode, rows in report["served"].items():
        for row in rows:
            errors = sum(row["errors"].values())
            print(
                f"{names[mode]:>14} {row['concurrency']:>5} {row['throughput_rps']:>9.0f} "
                f"{row['p50_s'] * 1e3:>8.3f} {row['p99_s'] * 1e3:>8.3f} {errors:>7} "
                f"{row['server_mean_batch_size']:>10.1f} {row['server_cores']:>12.2f} "
                f"{row['server_cpu_s_per_inference'] * 1e3:>17.3f}"
            )
    print("\ngRPC alone (a grpc.aio ModelInfer answering a constant, same client): the floor of serving")
    for row in report["grpc_echo_floor"]:
        print(
            f"  concurrency {row['concurrency']:>3}: {row['throughput_rps']:>7.0f} req/s, "
            f"p50 {row['p50_s'] * 1e3:.3f} ms, p99 {row['p99_s'] * 1e3:.3f} ms"
        )
    ratios = report["ratios"]
    load = report["load_average_1m"]
    cores = report["machine"]["cpu_count"]
    print(f"\nmachine: {cores} cores, 1-minute load average {load['start']:.1f} -> {load['end']:.1f}")
    print("\nratios")
    c32, c64 = ratios["workers_n_vs_1_throughput_c32"], ratios["workers_n_vs_1_throughput_c64"]
    print(f"  {n} workers / 1 worker throughput at concurrency 32 and 64: {c32:.2f}x, {c64:.2f}x")
    print(f"  batching on/off throughput at concurrency 32: {ratios['batching_on_off_throughput_c32']:.2f}x")
    print(
        "  served/in-process throughput at concurrency 64: "
        f"{ratios['served_vs_in_process_throughput_c64']:.2f} (target >= 0.65)"
    )
    print(
        f"  latency added by serving at concurrency 1: {ratios['added_latency_c1_s'] * 1e3:.3f} ms "
        "(target <= 1 ms; "
        f"batching on {ratios['added_latency_c1_batching_on_s'] * 1e3:.3f} ms, "
        f"off {ratios['added_latency_c1_batching_off_s'] * 1e3:.3f} ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
