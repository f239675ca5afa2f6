"""Overload: accepted latency, refusals and server memory when more clients call than the server holds.

`servescope serve` runs in a child process with a small queue (default `--max-queue-size 8`); closed-loop
clients (grpc.aio, pre-serialized batch-1 requests, spread over 8 connections) call it for a while at
each client count. Two client behaviours after a RESOURCE_EXHAUSTED answer:
  tight    send the next call at once (the worst case: every refusal comes straight back);
  backoff  wait a random time up to a backoff that starts at 50 ms and doubles up to 1 s, reset by an
           OK answer (what gRPC's retry guidance asks of clients).
`--transport rest` does the same over KServe v2 REST (aiohttp, one keep-alive connection per client, binary
tensors); a 429 answer stands for RESOURCE_EXHAUSTED. `--server-root DIR` runs the server from another
checkout (a before/after with the same clients). Prints p50/p99 of the accepted calls as the clients saw
them, the same inside the server (its servescope_request_duration_seconds between two scrapes: from the
data plane taking the request to the answer; mean, and p99 as the histogram bucket bound it falls in), the
answers by status code, and the server's RSS.

    .venv/bin/python benchmarks/overload.py --model-repository models --clients 32,256 --retry tight
    .venv/bin/python benchmarks/overload.py --model-repository models --retry backoff --duration-s 60
    .venv/bin/python benchmarks/overload.py --model-repository models --transport rest --clients 32,256 \
        --serve-flag=--max-inflight=16
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.lean_client import INFER_METHOD, build_requests, channel_options, rest_bodies  # noqa: E402
from loadtest import scrape  # noqa: E402
from loadtest.server_proc import ServerStartError, serve_command, spawn_ready, stop_server  # noqa: E402
from servescope import metrics as contract  # noqa: E402
from servescope.status import grpc_name_of_http  # noqa: E402

MODEL = "sentiment_fp32"
BACKOFF_START_S, BACKOFF_MAX_S = 0.05, 1.0


@dataclass
class OverloadResult:
    """One run: the latencies of accepted calls (seconds) and every answer by status code."""

    clients: int
    retry: str
    duration_s: float
    latencies_s: list[float] = field(default_factory=list)
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    server_mean_ms: float | None = None  # inside the server (data plane), accepted requests
    server_p99_ms: float | None = None  # the upper bound of the histogram bucket holding the p99

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) * 1000 if self.latencies_s else float("nan")

    def summary(self) -> dict[str, object]:
        return {
            "clients": self.clients, "retry": self.retry, "duration_s": self.duration_s,
            "ok_per_s": round(self.codes["OK"] / self.duration_s, 1),
            "p50_ms": round(self.percentile_ms(50), 2), "p99_ms": round(self.percentile_ms(99), 2),
            "server_mean_ms": self.server_mean_ms, "server_p99_ms": self.server_p99_ms,
            "codes": dict(self.codes),
        }  # fmt: skip


def server_latency(
    before: scrape.Snapshot, after: scrape.Snapshot, model: str = MODEL
) -> tuple[float, float]:
    """Mean and p99 (bucket upper bound) of servescope_request_duration_seconds between two scrapes, ms."""
    metric = contract.REQUEST_DURATION
    count = after.total(metric.count, model=model) - before.total(metric.count, model=model)
    total_s = after.total(metric.sum, model=model) - before.total(metric.sum, model=model)
    p99_s = float("inf")
    for bound in metric.buckets:
        le = contract.bound_key(bound)
        below = after.by_label(metric.bucket, "le", model=model)
        earlier = before.by_label(metric.bucket, "le", model=model)
        key = next(k for k in below if contract.bound_key(k) == le)
        if below[key] - earlier.get(key, 0.0) >= 0.99 * count:
            p99_s = bound
            break
    return round(total_s / count * 1000, 2) if count else float("nan"), p99_s * 1000


async def run_clients(
    target: str,
    *,
    clients: int,
    duration_s: float,
    warmup_s: float = 2.0,
    retry: str = "backoff",
    connections: int = 8,
    model: str = MODEL,
) -> OverloadResult:
    """`clients` closed-loop callers for warmup_s + duration_s; calls that start and end in the last
    duration_s are counted."""
    _check_retry(retry)
    payloads = build_requests(model)
    channels = [grpc.aio.insecure_channel(target, options=channel_options()) for _ in range(connections)]
    result = OverloadResult(clients, retry, duration_s)
    try:
        calls = [channel.unary_unary(INFER_METHOD, lambda b: b, lambda b: b) for channel in channels]
        await asyncio.gather(*(channel.channel_ready() for channel in channels))

        async def call(index: int) -> str:
            try:
                await calls[index % len(calls)](payloads[index % len(payloads)], timeout=30)
                return "OK"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        await _closed_loop(call, result, warmup_s)
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return result


async def run_rest_clients(
    target: str,
    *,
    clients: int,
    duration_s: float,
    warmup_s: float = 2.0,
    retry: str = "backoff",
    model: str = MODEL,
) -> OverloadResult:
    """As run_clients, over KServe v2 REST: each client its own keep-alive connection."""
    import aiohttp

    _check_retry(retry)
    bodies = rest_bodies(model)
    url = f"http://{target}/v2/models/{model}/infer"
    result = OverloadResult(clients, retry, duration_s)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def call(index: int) -> str:
            body, headers = bodies[index % len(bodies)]
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    return grpc_name_of_http(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return type(exc).__name__

        await _closed_loop(call, result, warmup_s)
    return result


def _check_retry(retry: str) -> None:
    if retry not in ("tight", "backoff"):
        raise ValueError(f"retry must be tight or backoff, got {retry!r}")


async def _closed_loop(
    call: Callable[[int], Awaitable[str]], result: OverloadResult, warmup_s: float
) -> None:
    """result.clients closed-loop callers of `call` (one call, its status code's name) for warmup_s then
    result.duration_s, counting the calls that start and end in the measured part; with backoff, a
    caller waits a random share of a doubling delay after each refused call."""
    measure_from_s = time.perf_counter() + warmup_s
    stop_s = measure_from_s + result.duration_s

    async def client(index: int) -> None:
        rng = random.Random(index)
        backoff_s = BACKOFF_START_S
        while (sent_s := time.perf_counter()) < stop_s:
            code = await call(index)
            done_s = time.perf_counter()
            if sent_s >= measure_from_s and done_s <= stop_s:
                result.codes[code] += 1
                if code == "OK":
                    result.latencies_s.append(done_s - sent_s)
            if code == "OK":
                backoff_s = BACKOFF_START_S
            elif result.retry == "backoff":
                await asyncio.sleep(rng.uniform(0, backoff_s))
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)

    await asyncio.gather(*(client(i) for i in range(result.clients)))


class ServeProcess:
    """`servescope serve` in a child process, one model, free ports, until stop()."""

    metrics_url: str

    def __init__(self, repository: Path, extra: list[str], root: Path = REPO_ROOT) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="servescope-overload-")
        ready_file = Path(self._folder.name) / "ready.json"
        command = [
            *serve_command(), "serve", "--model-repository", str(repository), "--model", MODEL,
            "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
            "--ready-file", str(ready_file),
            *extra,
        ]  # fmt: skip
        try:
            self.process, ready, _log = spawn_ready(
                command, ready_file, ready_file.with_name("server.log"), 120.0, root=root
            )
        except ServerStartError as exc:
            self._folder.cleanup()
            raise RuntimeError(f"servescope serve did not start: {exc}") from exc
        self.target = f"127.0.0.1:{ready['grpc_port']}"
        self.http_target = f"127.0.0.1:{ready['http_port']}"
        self.metrics_url = f"http://127.0.0.1:{ready['metrics_port']}/metrics"

    def measure(self, transport: str = "grpc", **run: object) -> OverloadResult:
        """run_clients(...) (or run_rest_clients) against this server, with its server-side latency."""
        before = scrape.scrape(self.metrics_url)
        if transport == "rest":
            result = asyncio.run(run_rest_clients(self.http_target, **run))  # type: ignore[arg-type]
        else:
            result = asyncio.run(run_clients(self.target, **run))  # type: ignore[arg-type]
        result.server_mean_ms, result.server_p99_ms = server_latency(before, scrape.scrape(self.metrics_url))
        return result

    def rss_bytes(self) -> int:
        import psutil

        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> int | None:
        """SIGTERM and the server's exit code (None: it had to be killed after 60 s)."""
        code = stop_server(self.process, grace_s=60.0)
        self._folder.cleanup()
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument(
        "--clients", default="32,256", help="client counts, comma-separated (default: 32,256)"
    )
    parser.add_argument("--duration-s", type=float, default=20.0, help="measured seconds per client count")
    parser.add_argument("--retry", choices=["tight", "backoff"], default="tight")
    parser.add_argument("--transport", choices=["grpc", "rest"], default="grpc")
    parser.add_argument(
        "--server-root", type=Path, default=REPO_ROOT, help="run the server from this checkout"
    )
    parser.add_argument("--max-queue-size", type=int, default=8)
    parser.add_argument("--serve-flag", action="append", default=[], help="another servescope serve flag")
    args = parser.parse_args(argv)
    server = ServeProcess(
        args.model_repository,
        ["--workers", "1", "--max-queue-size", str(args.max_queue_size), *args.serve_flag],
        args.server_root,
    )
    try:
        for clients in (int(c) for c in args.clients.split(",")):
            rss_before = server.rss_bytes()
            result = server.measure(
                args.transport, clients=clients, duration_s=args.duration_s, retry=args.retry
            )
            row = {
                "transport": args.transport,
                **result.summary(),
                "rss_mb": [round(rss_before / 2**20), round(server.rss_bytes() / 2**20)],
            }
            print(json.dumps(row), flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
