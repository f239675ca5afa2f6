"""Run one server of the peer benchmark in the foreground, for pointing other tools at it.

    .venv/bin/python benchmarks/peers/serve_peer.py triton --model-repository models
    servescope campaign FILE.yaml --target 127.0.0.1:PORT --metrics-url URL --output runs/triton

Prints the gRPC target and the metrics URL (also written as JSON to --ready-file), then serves until
SIGINT or SIGTERM. Settings default to the ones the last benchmark chose (results/latest.json), else to
servers.default_settings.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import servers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("server", choices=servers.SERVERS, help="which server to run")
    parser.add_argument("--model-repository", type=Path, required=True, help="exported model repository")
    parser.add_argument("--model", default="sentiment_fp32", help="model to serve")
    parser.add_argument(
        "--settings",
        default=None,
        help="JSON object of server settings; default: the load settings of results/latest.json, else "
        "built-in ones",
    )
    parser.add_argument("--ready-file", type=Path, default=None, help="write {grpc_target, metrics_url} here")
    args = parser.parse_args(argv)
    settings = servers.chosen_settings(args.server, args.settings)
    workdir = Path(tempfile.mkdtemp(prefix=f"servescope-peer-{args.server}-"))
    server = servers.start(args.server, settings, args.model_repository.resolve(), args.model, workdir)
    info = {"server": args.server, "grpc_target": server.grpc_target, "metrics_url": server.metrics_url}
    if args.ready_file:
        args.ready_file.write_text(json.dumps(info))
    print(f"{args.server} serving {args.model} with {settings}", flush=True)
    print(f"  --target {server.grpc_target} --metrics-url {server.metrics_url}", flush=True)
    print(f"  log: {server.log_path}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if server.process.poll() is not None:
                print(f"{args.server} exited with code {server.process.returncode}", file=sys.stderr)
                return 1
    finally:
        servers.stop(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
