"""`servescope analyze CAMPAIGN_DIR --output DIR [--prometheus-url URL]`.

Prints the verdict on the terminal and writes the reports to disk.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign_dir", type=Path, metavar="CAMPAIGN_DIR", help="campaign folder to analyse")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for report.html, report.md and summary.json (default: CAMPAIGN_DIR/analysis)",
    )
    parser.add_argument(
        "--prometheus-url",
        default=None,
        help="take server-side figures from this Prometheus (e.g. http://localhost:9090) with PromQL range "
        "queries over each step's window, instead of the campaign's own /metrics scrapes",
    )


def run(args: argparse.Namespace) -> int:
    # Heavy imports (numpy, matplotlib through the reports) only when the command runs.
    from analysis.pipeline import analyze_campaign, format_verdict
    from analysis.prometheus import PrometheusError
    from servescope.errors import CommandError, UsageError
    from servescope.results import ResultsError

    campaign_dir: Path = args.campaign_dir
    output: Path = args.output if args.output is not None else campaign_dir / "analysis"
    if not campaign_dir.is_dir():
        raise UsageError(f"CAMPAIGN_DIR {str(campaign_dir)!r} is not a folder")
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {str(output)!r} exists and is not a folder")
    if args.prometheus_url and not args.prometheus_url.startswith(("http://", "https://")):
        raise UsageError(f"--prometheus-url {args.prometheus_url!r} must start with http:// or https://")
    try:
        summary = analyze_campaign(campaign_dir, output, prometheus_url=args.prometheus_url)
    except ResultsError as exc:
        raise UsageError(str(exc)) from exc
    except PrometheusError as exc:
        raise CommandError(str(exc)) from exc
    print(format_verdict(summary))
    if not summary.steps:
        raise CommandError(f"no step of {campaign_dir} could be analysed; the report lists why")
    return 0
