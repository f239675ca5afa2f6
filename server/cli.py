"""`servescope serve`: flags (each with a SERVESCOPE_<FLAG> environment default) -> ServerOptions -> serve.

Nothing heavy is imported here at module level: ONNX Runtime loads only when the server starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from servescope import settings
from servescope.errors import CommandError, UsageError
from servescope.settings import ENV_PREFIX, Setting


def _env(flag: str, default: str | None) -> str | None:
    """The default of --flag: SERVESCOPE_FLAG from the environment when set, else the built-in one."""
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), default)


def _env_bool(flag: str) -> bool:
    value = _env(flag, "") or ""
    if value.lower() in ("", "0", "false", "no", "off"):
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"{ENV_PREFIX}{flag.upper().replace('-', '_')}={value!r}: expected true or false")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0..65535")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _auto_or_non_negative(text: str) -> int | str:
    return text if text == "auto" else _non_negative(text)


def auto_workers(device: str) -> int:
    """--workers auto: one worker per two cores this process may use (CPU affinity, a cgroup CPU quota),
    at least 1 and at most 8 (2 on a GPU, where every worker holds its own CUDA context and splits the
    batches). A worker needs about a core for its event loop and one for its ONNX Runtime threads; with
    fewer cores, more workers only split the batches (measured: docs/server.md, Workers)."""
    from server.gpu import gpu_count
    from servescope.cores import available_cores

    on_gpu = device == "cuda" or (device == "auto" and gpu_count() > 0)
    return max(1, min(available_cores() // 2, 2 if on_gpu else 8))


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a non-negative number of seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The serve flags. Every default can come from SERVESCOPE_<FLAG> (e.g. SERVESCOPE_GRPC_PORT)."""
    _add_listening(parser.add_argument)
    for setting in settings.SETTINGS:
        add_setting(parser, setting)
    _add_limits(parser.add_argument)
    _add_security(parser.add_argument)


def add_setting(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """The flag of one setting of servescope/settings.py, its default from its environment variable."""
    flag = setting.flag.removeprefix("--")
    if setting.switch:
        # dest is the setting's own name: --no-batching stores batching False.
        parser.add_argument(setting.flag, action="store_false", dest=setting.name,
                            default=not _env_bool(flag), help=setting.help_text())  # fmt: skip
        return

    def parse(text: str) -> int | str:
        try:
            return setting.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = setting.name
    parser.add_argument(
        setting.flag,
        dest=setting.name,
        type=parse,
        choices=setting.choices or None,
        default=os.environ.get(setting.env, setting.default),
        metavar=setting.metavar,
        help=setting.help_text(),
    )


def _add_listening(add: Callable[..., object]) -> None:
    """Where the server listens, and what it serves."""
    add(
        "--model-repository",
        type=Path,
        default=_env("model-repository", None),
        help="model repository folder (Triton layout plus metadata.json); required",
    )
    models = _env("model", None)
    add(
        "--model",
        action="append",
        dest="models",
        default=models.split(",") if models else None,
        metavar="NAME",
        help="serve only this model (repeatable); None: every model of the repository",
    )
    add(
        "--host", default=_env("host", "0.0.0.0"), help="address to listen on for gRPC, REST and metrics HTTP"
    )
    add(
        "--metrics-host",
        default=_env("metrics-host", None),
        help="address for the metrics HTTP port only (e.g. 127.0.0.1 to keep /metrics off the network); "
        "None: as --host",
    )
    add("--grpc-port", type=_port, default=_env("grpc-port", "8001"), help="gRPC port (0: pick a free one)")
    add(
        "--http-port",
        type=_port,
        default=_env("http-port", "8000"),
        help="KServe v2 REST port, Triton's 8000 by default (0: pick a free one)",
    )
    add(
        "--no-http",
        action="store_true",
        default=_env_bool("no-http"),
        help="serve no REST API (gRPC and the metrics port only)",
    )
    add(
        "--metrics-port",
        type=_port,
        default=_env("metrics-port", "8002"),
        help="HTTP port for /metrics, /healthz, /readyz (0: pick a free one)",
    )


def _add_limits(add: Callable[..., object]) -> None:
    """Draining, the ready file, and the bounds on messages and calls in flight."""
    add(
        "--grace-period-s",
        type=_seconds,
        default=_env("grace-period-s", "30"),
        help="seconds to finish accepted requests after SIGTERM/SIGINT",
    )
    add(
        "--ready-file",
        type=Path,
        default=_env("ready-file", None),
        help="write {grpc_port, http_port, metrics_port, pid} as JSON here once every model is ready "
        "(http_port null with --no-http)",
    )
    add(
        "--max-message-bytes",
        type=_positive,
        default=_env("max-message-bytes", str(64 * 1024 * 1024)),
        help="largest gRPC message received or sent and largest REST request body, in bytes "
        "(default 64 MiB; larger: RESOURCE_EXHAUSTED, REST 413)",
    )
    add(
        "--max-inflight",
        type=_auto_or_non_negative,
        default=_env("max-inflight", "auto"),
        metavar="N|auto",
        help="inference calls (unary, stream requests not yet answered, REST infer) in flight per worker; "
        "more are refused at once with RESOURCE_EXHAUSTED (REST: 429) before being read (auto: what the "
        "models' queues and "
        "batches hold, 1024 for an unbounded queue, plus 64; 0: no cap)",
    )
    add(
        "--max-stream-inflight",
        type=_positive,
        default=_env("max-stream-inflight", "16"),
        help="requests of one ModelStreamInfer stream read and not yet answered; the server reads the next "
        "one only once an answer was written (backpressure on clients that do not read)",
    )


def _add_security(add: Callable[..., object]) -> None:
    """TLS and the restricted endpoint groups."""
    add(
        "--tls-cert",
        type=Path,
        default=_env("tls-cert", None),
        help="PEM certificate chain: serve gRPC and REST over TLS (HTTPS)",
    )
    add("--tls-key", type=Path, default=_env("tls-key", None), help="PEM private key for --tls-cert")
    add(
        "--tls-client-ca",
        type=Path,
        default=_env("tls-client-ca", None),
        help="PEM CA certificate(s): require every client to present a certificate signed by one (mutual "
        "TLS; needs --tls-cert and --tls-key); None: clients are not authenticated",
    )
    restricted = "<group>[,<group>...]:<key>=<value>"
    add(
        "--grpc-restricted-protocol",
        action="append",
        default=[v for v in [_env("grpc-restricted-protocol", None)] if v],
        metavar=restricted,
        help="keep these gRPC endpoint groups (health, metadata, inference, statistics, model-config, "
        "model-repository, shared-memory, trace) for calls with header triton-grpc-protocol-<key>: <value>, "
        "as Triton's flag; others get PERMISSION_DENIED; repeatable, a group in one only; default: none",
    )
    add(
        "--http-restricted-api",
        action="append",
        default=[v for v in [_env("http-restricted-api", None)] if v],
        metavar=restricted,
        help="keep these REST endpoint groups (as --grpc-restricted-protocol) for requests with header "
        "<key>: <value>; others get 403; repeatable; default: none",
    )


def options_from_args(args: argparse.Namespace):  # -> server.app.ServerOptions (imported lazily)
    """Check the flags that argparse cannot, and build ServerOptions."""
    from server.app import ServerOptions

    if args.model_repository is None:
        raise UsageError("--model-repository is required (or set SERVESCOPE_MODEL_REPOSITORY)")
    if not Path(args.model_repository).is_dir():
        raise UsageError(f"--model-repository {args.model_repository}: no such folder")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key must be given together")
    if args.tls_client_ca and not args.tls_cert:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
    tls_files = (
        ("--tls-cert", args.tls_cert),
        ("--tls-key", args.tls_key),
        ("--tls-client-ca", args.tls_client_ca),
    )
    for flag, path in tls_files:
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{flag} {path}: no such file")
    values = {setting.name: getattr(args, setting.name) for setting in settings.SETTINGS}
    for setting in settings.SETTINGS:
        value = values[setting.name]
        if setting.high is not None and value is not None and int(value) > setting.high:
            raise UsageError(f"{setting.flag} {value}: above the maximum {setting.high}")
    if values["workers"] == "auto":
        values["workers"] = auto_workers(args.device)
    grpc_restricted, http_restricted = _restrictions(args)
    return ServerOptions(
        model_repository=Path(args.model_repository),
        models=tuple(args.models or ()),
        host=args.host,
        metrics_host=args.metrics_host,
        grpc_port=args.grpc_port,
        http_port=None if args.no_http else args.http_port,
        metrics_port=args.metrics_port,
        **values,
        grace_period_s=args.grace_period_s,
        ready_file=args.ready_file,
        max_message_bytes=args.max_message_bytes,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        max_inflight=None if args.max_inflight == "auto" else int(args.max_inflight),
        stream_max_inflight=int(args.max_stream_inflight),
        grpc_restricted=grpc_restricted,
        http_restricted=http_restricted,
    )


def _restrictions(args: argparse.Namespace) -> tuple[tuple, tuple]:
    """--grpc-restricted-protocol and --http-restricted-api, parsed and checked (the keys never shown)."""
    from server.restricted import GRPC_HEADER_PREFIX, Restrictions, parse

    parsed = []
    for flag, values, prefix in (
        ("--grpc-restricted-protocol", args.grpc_restricted_protocol or [], GRPC_HEADER_PREFIX),
        ("--http-restricted-api", args.http_restricted_api or [], ""),
    ):
        try:
            restrictions = tuple(parse(value, flag, prefix) for value in values)
            Restrictions(restrictions, flag)  # a group in two of them
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        parsed.append(restrictions)
    return parsed[0], parsed[1]


def run(args: argparse.Namespace) -> int:
    from server.app import serve
    from server.model import DeviceError
    from servescope.repository import RepositoryError

    options = options_from_args(args)
    try:
        if options.workers > 1:
            from server.supervisor import serve_workers

            return serve_workers(options, getattr(args, "log_level", "INFO"))
        return serve(options)
    except RepositoryError as exc:
        raise UsageError(str(exc)) from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except (DeviceError, OSError) as exc:
        raise CommandError(str(exc)) from exc
