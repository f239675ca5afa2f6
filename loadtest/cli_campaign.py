"""`servescope campaign FILE.yaml --output DIR`: run a load campaign (see loadtest/campaign.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from servescope.echo import one_line, shown
from servescope.errors import CommandError, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.yaml", type=Path, help="campaign file (see docs/loadtest.md)")
    parser.add_argument("--output", type=Path, required=True, help="campaign folder to write (must be new)")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="repository to serve from (default when no --target: ./models); with --target it is read "
        "only for the models' metadata.json",
    )
    parser.add_argument(
        "--target", default=None, help="HOST:PORT of a running KServe v2 gRPC server to measure instead"
    )
    parser.add_argument(
        "--metrics-url", default=None, help="that server's Prometheus URL, e.g. http://HOST:8002/metrics"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a campaign key (dotted, YAML value), e.g. --set step.duration_s=3 (repeatable)",
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {shown(item)}: expected KEY=VALUE")
        try:
            overrides[key] = yaml.safe_load(value)
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise UsageError(f"--set {shown(item)}: value is not valid YAML ({one_line(str(exc))})") from exc
    return overrides


def run(args: argparse.Namespace) -> int:
    from loadtest.campaign import CampaignError, CampaignInterrupted, run_campaign
    from loadtest.campaign_config import CampaignConfigError, load_campaign_config

    if args.metrics_url and not args.target:
        raise UsageError("--metrics-url needs --target")
    try:
        config = load_campaign_config(args.file, parse_overrides(args.overrides))
    except CampaignConfigError as exc:
        raise UsageError(str(exc)) from exc
    try:
        run_campaign(
            config,
            args.output,
            model_repository=args.model_repository,
            target=args.target,
            metrics_url=args.metrics_url,
            progress=lambda line: print(line, flush=True),
        )
    except CampaignInterrupted as exc:
        print(f"servescope campaign: {exc}", file=sys.stderr)
        return 130
    except CampaignError as exc:
        raise CommandError(str(exc)) from exc
    return 0
