"""`servescope demo`: the whole idea in one go, offline, on this machine.

1. export the sentiment model in fp32, int8 and fp16 (synthetic corpus; reused when already there),
2. run the demo load campaign, which starts and stops the server for each server setting,
3. analyze the campaign,
4. verify one recommendation: apply the top server-setting change for fp32 with batching off, re-measure
   at the load it predicts for, and print predicted against measured (the compare report is linked
   from report.html); then print the verdicts.

Everything it starts, it stops; Ctrl-C at any point leaves what finished on disk and says where.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from servescope import repository
from servescope.errors import CommandError, UsageError

PRECISIONS = ("fp32", "int8", "fp16")
DEMO_MODELS = tuple(f"sentiment_{p}" for p in PRECISIONS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository", type=Path, default=Path("models"), help="where the exported models are kept"
    )
    parser.add_argument(
        "--output", type=Path, default=Path("runs"), help="folder for the campaign and its report"
    )
    parser.add_argument("--force-export", action="store_true", help="retrain and re-export even if present")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs for the demo export")
    parser.add_argument("--train-samples", type=int, default=10000, help="training reviews for the export")
    parser.add_argument("--test-samples", type=int, default=2000, help="held-out reviews for the export")
    parser.add_argument(
        "--campaign",
        type=Path,
        default=None,
        help="campaign file (default: the packaged loadtest/campaigns/demo.yaml)",
    )
    parser.add_argument(
        "--step-duration-s",
        type=float,
        default=None,
        help="override the measured time of each step (seconds; default: the campaign file's)",
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="override the warm-up before each step (seconds; default: the campaign file's)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        default=None,
        help="override the concurrency levels, repeatable (default: the campaign file's)",
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    for flag, value in (
        ("--epochs", args.epochs),
        ("--train-samples", args.train_samples),
        ("--test-samples", args.test_samples),
    ):
        if value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
    run_dir = args.output / dt.datetime.now().strftime("demo-%Y%m%d-%H%M%S")
    _say(f"[1/4] Models: {args.model_repository}")
    _ensure_models(args)
    _say(f"[2/4] Load campaign: results in {run_dir / 'campaign'}")
    campaign_dir = _run_campaign(args, run_dir / "campaign")
    _say(f"[3/4] Analysis: report in {run_dir / 'report'}")
    summary = _analyze(campaign_dir, run_dir / "report")
    _say(f"[4/4] Verifying one recommendation: results in {run_dir / 'verify'}")
    verified = _verify(args, campaign_dir, summary, run_dir)
    from analysis.pipeline import format_verdict

    print()
    print(format_verdict(summary))
    if verified is not None:
        print(f"Verified: {verified.line()}")
        print(f"  compare report: {verified.compare_html}")
    print()
    _say(f"Demo finished in {time.perf_counter() - started:.0f} s. Open {run_dir / 'report' / 'report.html'}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _models_present(repo: Path) -> bool:
    """True when every demo model is there with its config, ONNX file and metadata."""
    try:
        entries = {e.name: e for e in repository.list_models(repo)}
    except repository.RepositoryError:
        return False
    for name in DEMO_MODELS:
        entry = entries.get(name)
        if entry is None or not entry.metadata or not entry.versions or not entry.model_file().is_file():
            return False
    return True


def _ensure_models(args: argparse.Namespace) -> None:
    repo: Path = args.model_repository
    if _models_present(repo) and not args.force_export:
        _say(f"  reusing the exported models in {repo} (pass --force-export to train them again)")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from exporter.cli import format_table
    from exporter.pipeline import ExportOptions, export_repository

    _say(
        f"  training on the SYNTHETIC corpus (an IMDb-shaped, seeded stand-in: this machine has no network)"
        f"\n  {args.train_samples} reviews, {args.epochs} epochs; for the real IMDb data run:"
        f"\n    servescope export --dataset imdb --dataset-path imdb.npz --output {repo} --force"
    )
    options = ExportOptions(
        output=repo,
        epochs=args.epochs,
        train_samples=args.train_samples,
        test_samples=args.test_samples,
        force=True,
    )
    try:
        reports = export_repository(options)
    except UsageError as exc:
        raise CommandError(f"export failed: {exc}") from exc
    print(format_table([r.metadata for r in reports]), flush=True)


def _campaign_file(args: argparse.Namespace) -> Any:
    if args.campaign is not None:
        if not args.campaign.is_file():
            raise UsageError(f"--campaign {args.campaign}: no such file")
        return args.campaign
    return resources.files("loadtest") / "campaigns" / "demo.yaml"


def _run_campaign(args: argparse.Namespace, output: Path) -> Path:
    from loadtest.campaign import CampaignError, CampaignInterrupted, run_campaign
    from loadtest.campaign_config import CampaignConfigError, load_campaign_config

    overrides: dict[str, Any] = {}
    if args.step_duration_s is not None:
        overrides["step.duration_s"] = args.step_duration_s
        overrides["step.max_duration_s"] = args.step_duration_s * 1.5
    if args.warmup_s is not None:
        overrides["step.warmup_s"] = args.warmup_s
    if args.concurrency:
        overrides["load.concurrency"] = args.concurrency
    with resources.as_file(_campaign_file(args)) as path:
        try:
            config = load_campaign_config(path, overrides or None)
        except CampaignConfigError as exc:
            raise UsageError(str(exc)) from exc
    try:
        return run_campaign(
            config,
            output,
            model_repository=args.model_repository,
            progress=lambda line: _say(f"  {line}"),
        )
    except CampaignInterrupted as exc:
        _say(
            f"\nInterrupted: {exc.done} of {exc.total} steps were finished and kept in {exc.folder}; the "
            f"models stay in {args.model_repository}.\nAnalyze what finished with: servescope analyze "
            f"{exc.folder} --output {output.parent / 'report'}"
        )
        raise KeyboardInterrupt from None
    except CampaignError as exc:
        raise CommandError(f"load campaign failed: {exc} (the finished steps are kept in {output})") from exc


def _analyze(campaign_dir: Path, output: Path) -> Any:
    from analysis.pipeline import analyze_campaign
    from servescope.results import ResultsError

    try:
        return analyze_campaign(campaign_dir, output)
    except ResultsError as exc:
        raise CommandError(f"analysis failed: {exc}") from exc


def _verify(args: argparse.Namespace, campaign_dir: Path, summary: Any, run_dir: Path) -> Any:
    """Apply the top recommendation of fp32 with batching off, re-measure it, and link the comparison
    from the report (the report is written again with the link)."""
    from analysis.pipeline import write_reports
    from analysis.reader import load_campaign
    from cli.tune import verify_top_recommendation
    from loadtest.campaign import CampaignError

    try:
        verified = verify_top_recommendation(
            campaign_dir, summary, "sentiment_fp32", "batching off", run_dir / "verify",
            args.model_repository, progress=lambda line: _say(f"  {line}"),
        )  # fmt: skip
    except CampaignError as exc:
        _say(f"  the verification could not run: {exc}")
        return None
    if verified is None:
        _say("  no server-setting recommendation to verify for sentiment_fp32 with batching off")
        return None
    report = run_dir / "report"
    summary.links[f"Verified: {verified.line()}"] = os.path.relpath(verified.compare_html, report)
    write_reports(summary, load_campaign(campaign_dir), report)
    return verified


if __name__ == "__main__":  # pragma: no cover - `servescope demo` is the entry point
    from cli.main import main

    sys.exit(main(["demo", *sys.argv[1:]]))
