"""`servescope compare BASELINE CANDIDATE [--output DIR] [--fail-on-regression PCT]`.

Prints the comparison on the terminal and writes compare.md, compare.html and compare.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "baseline", type=Path, metavar="BASELINE", help="campaign folder (or its analysis folder)"
    )
    parser.add_argument(
        "candidate", type=Path, metavar="CANDIDATE", help="campaign folder to compare with it"
    )
    parser.add_argument(
        "--output", type=Path, default=None,
        help="folder for compare.md, compare.html and compare.json (default: CANDIDATE/compare)",
    )  # fmt: skip
    parser.add_argument(
        "--fail-on-regression", type=float, default=None, metavar="PCT",
        help="exit 1 when a matched series got worse, beyond its noise, by more than PCT percent "
        "(throughput or p99 at a matched load, or the best throughput within the objective)",
    )  # fmt: skip


def campaign_folder(path: Path) -> Path:
    """A campaign folder, or the campaign an analysis folder (summary.json) was made from."""
    from servescope.errors import UsageError

    if (path / "campaign.json").is_file():
        return path
    summary = path / "summary.json"
    if summary.is_file():
        try:
            return Path(json.loads(summary.read_text())["campaign_dir"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{summary}: not a servescope analysis summary ({exc})") from exc
    raise UsageError(
        f"{path}: neither a campaign folder (campaign.json) nor an analysis folder (summary.json)"
    )


def run(args: argparse.Namespace) -> int:
    from analysis.compare import compare_campaigns, regressions, write_json
    from analysis.compare_report import format_table, render_html, render_markdown
    from servescope.errors import UsageError
    from servescope.results import ResultsError

    if args.fail_on_regression is not None and args.fail_on_regression < 0:
        raise UsageError(f"--fail-on-regression {args.fail_on_regression:g}: must not be negative")
    baseline, candidate = campaign_folder(args.baseline), campaign_folder(args.candidate)
    output: Path = args.output if args.output is not None else args.candidate / "compare"
    try:
        comparison = compare_campaigns(baseline, candidate)
    except ResultsError as exc:
        raise UsageError(str(exc)) from exc
    output.mkdir(parents=True, exist_ok=True)
    (output / "compare.md").write_text(render_markdown(comparison))
    (output / "compare.html").write_text(render_html(comparison))
    write_json(comparison, output / "compare.json")
    print(format_table(comparison))
    print(f"Report: {output / 'compare.html'} (also compare.md, compare.json)")
    if args.fail_on_regression is not None:
        worse = regressions(comparison, args.fail_on_regression / 100)
        for line in worse:
            print(f"REGRESSION {line}")
        if worse:
            return 1
    return 0
