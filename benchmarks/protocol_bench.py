"""Per-request cost of unary gRPC, streaming gRPC and REST against one servescope server, side by side.

One `servescope serve` (one worker, the model's config.pbtxt batching) in a child process, the lean
async clients of benchmarks/lean_client.py in this one (pre-built batch-1 requests; REST with binary
tensors on keep-alive connections), every transport measured in the same run, in rounds with the order
rotated so that drift on a shared machine spreads over all three:
  1. concurrency 1: client latency p50 and p99 (what one request costs end to end);
  2. concurrency 32 (8 gRPC connections; REST one connection per caller): throughput;
  3. at both: server CPU per request (process_cpu_seconds_total from /metrics) and client CPU per
     request (this process), the costs that do not depend on waiting;
then ratios to unary gRPC. Prints a table and writes JSON (benchmarks/results/protocol_bench.json).

    .venv/bin/python benchmarks/protocol_bench.py --model-repository models
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.lean_client import LoadResult, run_load, run_rest_load, run_stream_load  # noqa: E402
from benchmarks.report import model_missing, run_header, write_report  # noqa: E402
from benchmarks.serve_bench import ServerProcess  # noqa: E402
from loadtest import scrape  # noqa: E402

TRANSPORTS = ("grpc", "grpc_stream", "http")
CONCURRENCIES = (1, 32)
CONNECTIONS = 8


async def measure(
    transport: str, server: ServerProcess, model: str, concurrency: int, duration_s: float, warmup_s: float
) -> LoadResult:
    grpc_target, http_target = f"127.0.0.1:{server.grpc_port}", f"127.0.0.1:{server.http_port}"
    connections = min(CONNECTIONS, concurrency)
    if transport in ("grpc", "grpc_stream"):
        load = run_load if transport == "grpc" else run_stream_load
        return await load(
            grpc_target,
            model,
            concurrency=concurrency,
            duration_s=duration_s,
            warmup_s=warmup_s,
            connections=connections,
        )
    return await run_rest_load(
        http_target, model, concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s
    )


def one_run(
    transport: str, server: ServerProcess, model: str, concurrency: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    before, client_before = server.snapshot(), time.process_time()
    result = asyncio.run(measure(transport, server, model, concurrency, duration_s, warmup_s))
    after, client_s = server.snapshot(), time.process_time() - client_before
    deltas = scrape.server_deltas(before, after, model)
    served = sum(deltas.requests_by_code.values()) if deltas else 0.0  # warm-up included, as the CPU
    server_cpu_s = (scrape.process_cpu_seconds(after) or 0.0) - (scrape.process_cpu_seconds(before) or 0.0)
    return {
        "transport": transport,
        "concurrency": concurrency,
        **result.row(),
        "server_cpu_s_per_request": server_cpu_s / served if served else float("nan"),
        "client_cpu_s_per_request": client_s / served if served else float("nan"),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per transport and concurrency, the median over rounds of every figure."""
    import numpy as np

    out: dict[str, dict[str, dict[str, float]]] = {}
    keys = ("throughput_rps", "p50_s", "p99_s", "server_cpu_s_per_request", "client_cpu_s_per_request")
    for transport in TRANSPORTS:
        for concurrency in CONCURRENCIES:
            chosen = [r for r in rows if r["transport"] == transport and r["concurrency"] == concurrency]
            figures = {key: float(np.median([r[key] for r in chosen])) for key in keys}
            out.setdefault(transport, {})[str(concurrency)] = figures
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    default_repository = Path(os.environ.get("SERVESCOPE_MODEL_REPOSITORY", "models"))
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=default_repository,
        help="model repository made by `servescope export`",
    )
    parser.add_argument("--model", default="sentiment_fp32", help="model to call")
    parser.add_argument("--duration-s", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every transport (order rotated)")
    default_output = REPO_ROOT / "benchmarks" / "results" / "protocol_bench.json"
    parser.add_argument("--output", type=Path, default=default_output, help="JSON results file")
    args = parser.parse_args(argv)
    if model_missing("protocol_bench", args.model_repository, args.model):
        return 2
    started = time.time()
    load_at_start = os.getloadavg()
    server = ServerProcess(args.model_repository, args.model, ["--workers", "1"])
    rows = []
    try:
        for round_index in range(args.rounds):
            order = TRANSPORTS[round_index % 3 :] + TRANSPORTS[: round_index % 3]
            for concurrency in CONCURRENCIES:
                for transport in order:
                    row = one_run(transport, server, args.model, concurrency, args.duration_s, args.warmup_s)
                    rows.append({**row, "round": round_index})
    finally:
        server.stop()
    summary = summarize(rows)
    unary = summary["grpc"]
    ratios = {
        f"{transport}_vs_grpc": {
            "p50_c1": summary[transport]["1"]["p50_s"] / unary["1"]["p50_s"],
            "throughput_c32": summary[transport]["32"]["throughput_rps"] / unary["32"]["throughput_rps"],
            "server_cpu_per_request_c32": summary[transport]["32"]["server_cpu_s_per_request"]
            / unary["32"]["server_cpu_s_per_request"],
        }
        for transport in ("grpc_stream", "http")
    }
    report = {
        **run_header(started),
        "model": args.model,
        "rounds": args.rounds,
        "runs": rows,
        "summary": summary,
        "ratios": ratios,
        "wall_s": time.time() - started,
        "load_average_1m": {"start": load_at_start[0], "end": os.getloadavg()[0]},
    }
    print_report(report)
    write_report(report, args.output)
    return 0


NAMES = {"grpc": "gRPC unary", "grpc_stream": "gRPC stream", "http": "REST"}


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nper-request cost, {report['model']}, batch-1 requests, one server (median of "
        f"{report['rounds']} rounds)"
    )
    print(
        f"{'transport':>12} {'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server CPU ms/req':>18} "
        f"{'client CPU ms/req':>18}"
    )
    for transport, by_concurrency in report["summary"].items():
        for concurrency, row in by_concurrency.items():
            print(
                f"{NAMES[transport]:>12} {concurrency:>5} {row['throughput_rps']:>8.0f} "
                f"{row['p50_s'] * 1e3:>8.3f} "
                f"{row['p99_s'] * 1e3:>8.3f} {row['server_cpu_s_per_request'] * 1e3:>18.3f} "
                f"{row['client_cpu_s_per_request'] * 1e3:>18.3f}"
            )
    print("\nratios to gRPC unary")
    for name, ratio in report["ratios"].items():
        print(
            f"  {NAMES[name.removesuffix('_vs_grpc')]:>12}: p50 at concurrency 1 {ratio['p50_c1']:.2f}x, "
            f"throughput at 32 {ratio['throughput_c32']:.2f}x, server CPU per request at 32 "
            f"{ratio['server_cpu_per_request_c32']:.2f}x"
        )
    load = report["load_average_1m"]
    print(
        f"\nmachine: {report['machine']['cpu_count']} cores, 1-minute load average {load['start']:.1f} -> "
        f"{load['end']:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
