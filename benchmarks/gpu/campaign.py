"""A short `servescope campaign` on the chosen device and its `servescope analyze`, in child processes
under the section's deadline; skipped with a line saying why where Locust is not installed (the GPU
machine has none: it would have to travel as wheels with gevent and its other needs)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.gpu.budget import Section
from loadtest.procs import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]
NO_LOCUST = (
    "campaign: skipped: locust is not installed here (servescope campaign drives Locust); the served "
    "section measured the server with the lean gRPC client instead"
)


@dataclass
class CampaignResult:
    ran: bool
    reason: str | None = None  # why it did not run or did not finish
    campaign_dir: str | None = None
    analysis_dir: str | None = None
    steps: int = 0
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # model, series, kind, title, evidence

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def campaign_yaml(
    model: str, device: str, workers: int, concurrency: list[int], duration_s: float, warmup_s: float
) -> str:
    """A one-server campaign file: batching on at the model's config, the given concurrencies."""
    levels = ", ".join(str(c) for c in concurrency)
    return (
        f"name: gpu-{device}\n"
        f"models: [{model}]\n"
        "client_batch_sizes: [1]\n"
        f"load: {{concurrency: [{levels}], workers: 0, probe_requests: 50}}\n"
        f"server:\n  - {{batching: true, device: {device}, workers: {workers}}}\n"
        f"step: {{warmup_s: {warmup_s}, duration_s: {duration_s}, max_duration_s: {duration_s}, "
        "stability_percent: 50}\n"
        "on_error: continue\n"
    )


def _cli(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = child_env()
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run(
    repository: Path,
    model: str,
    device: str,
    workers: int,
    concurrency: list[int],
    duration_s: float,
    warmup_s: float,
    output: Path,
    section: Section,
) -> CampaignResult:
    if importlib.util.find_spec("locust") is None:
        section.say(NO_LOCUST)
        return CampaignResult(ran=False, reason=NO_LOCUST)
    config = output / "campaign.yaml"
    config.write_text(campaign_yaml(model, device, workers, concurrency, duration_s, warmup_s))
    campaign_dir, analysis_dir = output / "campaign", output / "analysis"
    section.say(f"servescope campaign {config} ({len(concurrency)} steps)")
    try:
        done = _cli(
            ["campaign", str(config), "--output", str(campaign_dir), "--model-repository", str(repository)],
            max(1.0, section.left_s() - 10),
        )
    except subprocess.TimeoutExpired:
        reason = "campaign: stopped: the section budget ran out before the campaign ended"
        section.say(reason)
        return CampaignResult(ran=False, reason=reason, campaign_dir=str(campaign_dir))
    if done.returncode != 0:
        reason = f"campaign: failed with exit code {done.returncode}: {done.stderr.strip()[-300:]}"
        section.say(reason)
        return CampaignResult(ran=False, reason=reason, campaign_dir=str(campaign_dir))
    steps_file = campaign_dir / "steps.jsonl"
    steps = len(steps_file.read_text().splitlines()) if steps_file.is_file() else 0
    section.say(f"servescope analyze {campaign_dir}")
    try:
        done = _cli(["analyze", str(campaign_dir), "--output", str(analysis_dir)], max(1.0, section.left_s()))
    except subprocess.TimeoutExpired:
        reason = "analysis: stopped: the section budget ran out"
        section.say(reason)
        return CampaignResult(ran=True, reason=reason, campaign_dir=str(campaign_dir), steps=steps)
    if done.returncode != 0:
        reason = f"analysis: failed with exit code {done.returncode}: {done.stderr.strip()[-300:]}"
        return CampaignResult(ran=True, reason=reason, campaign_dir=str(campaign_dir), steps=steps)
    summary = json.loads((analysis_dir / "summary.json").read_text())
    verdicts = [
        {key: v.get(key) for key in ("model", "series", "kind", "title", "evidence")}
        for v in summary.get("verdicts", [])
    ]
    for verdict in verdicts:
        section.say(
            f"verdict {verdict['model']} / {verdict['series']}: {verdict['kind']}: {verdict['title']}"
        )
    return CampaignResult(True, None, str(campaign_dir), str(analysis_dir), steps, verdicts)
