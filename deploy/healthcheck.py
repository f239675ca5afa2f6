"""Container health check: ask the server's gRPC health service (grpc.health.v1) whether it serves.

Exit 0 when the overall service ("") answers SERVING, 1 otherwise (not serving, unreachable, timeout),
printing one line on why. Used by the Dockerfile HEALTHCHECK and by Compose; Kubernetes uses its native
`grpc:` probes against the same service instead.

Usage: python healthcheck.py [HOST:PORT] [--service NAME] [--timeout-s S]
The address defaults to 127.0.0.1:$SERVESCOPE_GRPC_PORT (8001).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_target = "127.0.0.1:" + os.environ.get("SERVESCOPE_GRPC_PORT", "8001")
    parser.add_argument("target", nargs="?", default=default_target, help="server gRPC address HOST:PORT")
    parser.add_argument("--service", default="", help="health service name ('' = the whole server)")
    parser.add_argument("--timeout-s", type=float, default=3.0, help="deadline of the check in seconds")
    args = parser.parse_args(argv)

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout_s)
        except grpc.RpcError as exc:
            print(f"unhealthy: {args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {args.target}: {status}", file=sys.stderr)
        return 1
    print(f"healthy: {args.target}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
