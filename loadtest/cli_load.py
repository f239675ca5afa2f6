"""`servescope load`: one headless load test against a running server, run as a one-step campaign.

The output folder holds campaign.json and steps.jsonl (servescope.results, one StepRecord), the
measured latencies in samples/, and Locust's own reports in locust/ (CSV, HTML, JSON, logs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from servescope.errors import CommandError, UsageError


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """How the load client reaches the server (loadtest.connection); `servescope load` only."""
    from loadtest.connection import PROTOCOLS

    parser.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        default="grpc",
        help="grpc: KServe v2 gRPC; http: KServe v2 REST with binary tensors (Locust FastHttpUser)",
    )
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="gRPC: send every request of a user on one ModelStreamInfer stream (like perf_analyzer "
        "--streaming); off: unary ModelInfer calls",
    )
    parser.add_argument(
        "--tls-ca",
        default=None,
        metavar="FILE",
        help="PEM CA certificate of the server: use TLS (HTTPS); none: no TLS",
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="PEM client certificate for mutual TLS (with --tls-key)",
    )
    parser.add_argument("--tls-key", default=None, metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--model-version", default="", help="model version to ask for (empty: the one the server serves)"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="header sent with every request (gRPC metadata or HTTP header), repeatable; "
        "campaign.json records the names only",
    )
    parser.add_argument(
        "--input-data",
        default=None,
        metavar="FILE",
        help="payloads from a JSON file in perf_analyzer's --input-data format (one entry per sample, "
        "consecutive entries fill a batch); none: generated payloads (--payload)",
    )
    parser.add_argument(
        "--probe-requests",
        type=int,
        default=200,
        help="before the load, time this many sequential requests per transport the target speaks "
        "(unary and streaming gRPC, or REST) for the analysis; 0: no probe",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from loadtest.engine import DEFAULT_ENGINE, ENGINES

    parser.add_argument(
        "--engine",
        choices=list(ENGINES),
        default=DEFAULT_ENGINE,
        help="the load generator (loadtest/engine.py): locust runs headless Locust in subprocesses, "
        "perf_analyzer runs NVIDIA's C++ client (one load level per run: no --ramp-steps)",
    )
    parser.add_argument(
        "--target",
        required=True,
        help="HOST:PORT of the KServe v2 server (its gRPC port, or REST with --protocol http)",
    )
    parser.add_argument("--model", required=True, help="model name to send requests to")
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument("--users", type=int, help="closed loop: concurrent users, each waiting for its answer")
    load.add_argument("--rate", type=float, help="open loop: target request rate in requests/s")
    parser.add_argument("--duration-s", type=float, required=True, help="measured time in seconds")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="warm-up before measuring, seconds")
    parser.add_argument("--batch-size", type=int, default=1, help="samples per request (client batch size)")
    parser.add_argument(
        "--workers", type=int, default=0, help="Locust worker processes on this machine (0: one process)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="gRPC connections per Locust process, users dealt over them (a server whose workers share a "
        "port balances connections, not requests)",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder to write (must be new)")
    parser.add_argument(
        "--metrics-url", default=None, help="the server's Prometheus URL, for server-side deltas"
    )
    parser.add_argument(
        "--arrival", choices=["constant", "poisson"], default="poisson", help="open-loop arrival process"
    )
    parser.add_argument(
        "--max-inflight",
        type=int,
        default=1000,
        help="open loop: outstanding requests per generator process before arrivals are dropped",
    )
    parser.add_argument(
        "--payload",
        choices=["auto", "tokens", "random"],
        default="auto",
        help="tokens: synthetic reviews; random: random values; auto: tokens for a [-1, L] integer input",
    )
    parser.add_argument(
        "--ramp-steps",
        type=int,
        default=1,
        help="raise the load in this many equal steps up to --users or --rate within one Locust run; "
        "each step gets its own warm-up, --duration-s of measurement and step record",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=30.0, help="per-request deadline (gRPC) or timeout (HTTP), seconds"
    )
    parser.add_argument("--seed", type=int, default=0, help="payload seed")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="optional: repository to read the model's metadata.json from (precision, token range)",
    )
    add_connection_arguments(parser)


def _check(args: argparse.Namespace) -> None:
    from loadtest.engine import ramp_refusal

    if args.users is not None and args.users < 1:
        raise UsageError(f"--users {args.users}: must be at least 1")
    if args.rate is not None and args.rate <= 0:
        raise UsageError(f"--rate {args.rate:g}: must be greater than 0 requests/s")
    if args.duration_s <= 0:
        raise UsageError(f"--duration-s {args.duration_s:g}: must be greater than 0")
    if args.warmup_s < 0:
        raise UsageError(f"--warmup-s {args.warmup_s:g}: must not be negative")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.workers < 0:
        raise UsageError(f"--workers {args.workers}: must not be negative")
    if args.connections < 1:
        raise UsageError(f"--connections {args.connections}: must be at least 1")
    if args.max_inflight < 1:
        raise UsageError(f"--max-inflight {args.max_inflight}: must be at least 1")
    if args.ramp_steps < 1:
        raise UsageError(f"--ramp-steps {args.ramp_steps}: must be at least 1")
    refusal = ramp_refusal(args.engine, "--ramp-steps") if args.ramp_steps > 1 else None
    if refusal:
        raise UsageError(refusal)
    if ":" not in args.target:
        raise UsageError(f"--target {args.target!r}: expected HOST:PORT")
    if args.probe_requests < 0:
        raise UsageError(f"--probe-requests {args.probe_requests}: must not be negative")
    if args.input_data is not None and not Path(args.input_data).is_file():
        raise UsageError(f"--input-data {args.input_data}: no such file")


def connection_from_args(args: argparse.Namespace):  # -> loadtest.connection.Connection
    from loadtest.connection import Connection, ConnectionSettingsError, parse_header

    try:
        headers = dict(parse_header(text) for text in args.header)
        connection = Connection(
            protocol=args.protocol,
            streaming=args.streaming,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            model_version=args.model_version,
            headers=headers,
        )
        connection.check()
    except ConnectionSettingsError as exc:
        raise UsageError(str(exc)) from exc
    return connection


def ramp_levels(args: argparse.Namespace) -> tuple[list[int], list[float]]:
    """(users, rates): one level, or --ramp-steps levels rising evenly to --users or --rate."""
    steps = args.ramp_steps
    if args.users is not None:
        return sorted({max(1, round(args.users * (i + 1) / steps)) for i in range(steps)}), []
    return [], [args.rate * (i + 1) / steps for i in range(steps)]


def load_config(args: argparse.Namespace):  # -> loadtest.campaign_config.CampaignConfig
    """The command as a campaign of one step (a ramp: one generator run over its levels), three windows
    of --duration-s / 3 measured whether or not they agree (max_duration_s = duration_s)."""
    from loadtest.campaign_config import CampaignConfigError, parse_campaign_config

    _check(args)
    connection = connection_from_args(args)
    users, rates = ramp_levels(args)
    data = {
        "name": "load",
        "models": [args.model],
        "client_batch_sizes": [args.batch_size],
        "load": {
            "concurrency": users,
            "rates_rps": rates,
            "ramp": args.ramp_steps > 1,
            "arrival": args.arrival,
            "max_inflight": args.max_inflight,
            "connections": args.connections,
            "workers": args.workers,
            "protocol": connection.protocol,
            "streaming": connection.streaming,
            "tls_ca": connection.tls_ca,
            "tls_cert": connection.tls_cert,
            "tls_key": connection.tls_key,
            "model_version": connection.model_version,
            "headers": connection.headers,
            "probe_requests": args.probe_requests,
            "engine": args.engine,
        },
        "step": {"warmup_s": args.warmup_s, "duration_s": args.duration_s, "max_duration_s": args.duration_s},
        "payload": args.payload,
        "input_data": args.input_data,
        "timeout_s": args.timeout_s,
        "seed": args.seed,
    }
    try:
        return parse_campaign_config(data, source="servescope load")
    except CampaignConfigError as exc:
        raise UsageError(str(exc)) from exc


def load(args: argparse.Namespace, progress: Callable[[str], None] = print) -> Path:
    """Run the command's campaign (loadtest.campaign.run_load); raises CampaignError, CampaignInterrupted."""
    from loadtest.campaign import run_load

    config = load_config(args)
    return run_load(config, args.output, args.target, args.metrics_url, args.model_repository, progress)


def run(args: argparse.Namespace) -> int:
    from loadtest.campaign import CampaignError, CampaignInterrupted

    try:
        load(args, progress=lambda line: print(line, flush=True))
    except CampaignInterrupted as exc:
        print(f"servescope load: {exc}", file=sys.stderr)
        return 130
    except CampaignError as exc:
        raise CommandError(str(exc)) from exc
    return 0
