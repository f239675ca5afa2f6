"""The `servescope` command: one entry point, one subcommand per part of the system.

Subcommand modules are imported only when their subcommand runs, so `servescope serve` never loads
TensorFlow or Locust, and `--help` stays fast. Each module provides `add_arguments(parser)` and
`run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from servescope import __version__
from servescope.errors import CommandError, UsageError

# name -> (module, one-line help). The module is imported lazily.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "export": ("exporter.cli", "train the sentiment model and export fp32/int8/fp16 ONNX variants"),
    "serve": ("server.cli", "serve a model repository over the KServe v2 gRPC protocol"),
    "load": ("loadtest.cli_load", "run one headless load test (Locust by default) against a server"),
    "campaign": ("loadtest.cli_campaign", "run a load campaign described by a YAML file"),
    "analyze": ("analysis.cli", "find the bottleneck in a campaign and write a report"),
    "compare": ("analysis.cli_compare", "compare two campaigns series by series, beyond their noise"),
    "tune": ("cli.tune", "apply the top recommendation, re-measure, check its prediction, repeat"),
    "demo": ("cli.demo", "export, serve, load and analyze end to end on this machine"),
}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line and exits 2 (docs/architecture.md, exit codes)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="servescope",
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"servescope {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    # Only the chosen subcommand's module is imported; the others get a help line only.
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args._run(args) or 0)
    except UsageError as exc:
        print(f"servescope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"servescope {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"servescope {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
