"""analyze_campaign: read a campaign folder, work out every analysis, write the three reports.

`format_verdict` (report_text.py) is re-exported here for the package's API."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from analysis.batch_curve import build_curves
from analysis.batching import analyze_batching
from analysis.consistency import Flag, check_step, littles_law_ratio
from analysis.context import Context
from analysis.curves import build_curve, group_series, objective_from, series_label
from analysis.decompose import Decomposition, decompose
from analysis.floor import analyze_floor
from analysis.quantization import compare_variants
from analysis.reader import Campaign, load_campaign
from analysis.report_text import format_verdict
from analysis.steps import batch_size_mean, describe_load, offered_load
from analysis.summary import HTML_FILE, MARKDOWN_FILE, SUMMARY_FILE, StepRow, Summary
from analysis.utilization import UtilizationAnalysis, analyze_utilization
from analysis.verdict import judge
from servescope.results import CampaignInfo, StepRecord, is_loopback

log = logging.getLogger(__name__)


def _apply_prometheus(campaign: Campaign, url: str, notes: list[str]) -> None:
    from analysis.prometheus import PrometheusClient, fetch_server_deltas

    client = PrometheusClient(url)
    replaced = 0
    for step in campaign.steps:
        deltas = fetch_server_deltas(client, step)
        if deltas is None:
            notes.append(
                f"step {step.step_index}: Prometheus has no servescope series for {step.model} in the step's "
                "window; kept the campaign's own scrape"
            )
            continue
        step.server = deltas
        replaced += 1
    notes.append(f"server-side figures of {replaced} of {len(campaign.steps)} steps from Prometheus at {url}")


def analyze(campaign: Campaign, prometheus_url: str | None = None) -> Summary:
    """Work out every analysis of a loaded campaign (no files written)."""
    notes: list[str] = []
    if campaign.info.interrupted:
        notes.append("the campaign was interrupted: only the steps it finished are here")
    if prometheus_url:
        _apply_prometheus(campaign, prometheus_url, notes)
    info = campaign.info
    objective = objective_from(info.objective or {})
    steps = sorted(campaign.steps, key=lambda s: s.step_index)
    decompositions = {s.step_index: decompose(s) for s in steps}
    flags = [flag for s in steps for flag in check_step(s)]
    untrusted = {f.step_index for f in flags}
    series = group_series(steps)
    curves = {label: build_curve(label, group, objective, untrusted) for label, group in series.items()}
    batching = analyze_batching(steps, decompositions, objective.latency_s)
    notes.extend(batching.fit_notes)
    utilization: UtilizationAnalysis = analyze_utilization(steps, info)
    comparisons = compare_variants(steps, curves, info)
    floor, floor_notes = analyze_floor(steps, info)
    notes.extend(floor_notes)
    loopback = _loopback(info)
    batch_curves = build_curves(steps, info.compute_probe)
    verdicts = []
    for label, group in series.items():
        context = Context(
            curve=curves[label],
            steps=group,
            decompositions=decompositions,
            flags=[f for f in flags if f.step_index in {s.step_index for s in group}],
            batching=batching,
            utilization=utilization.points,
            correlation=utilization.correlations.get(group[0].model),
            comparisons=comparisons,
            objective=objective,
            loopback=loopback,
            batch_curves=batch_curves,
            transport=info.transport,
        )
        verdicts.append(judge(context))
    if not steps:
        notes.append("no step could be analysed: see the steps left out")
    rows = _step_rows(steps, decompositions, flags, utilization)
    machine = dataclasses.asdict(info.machine)
    return Summary(
        campaign=info.name,
        campaign_dir=str(campaign.folder),
        output_dir="",
        objective=objective,
        machine=machine,
        interrupted=info.interrupted,
        verdicts=verdicts,
        steps=rows,
        left_out=campaign.left_out,
        flags=flags,
        curves=list(curves.values()),
        batching=batching,
        quantization=comparisons,
        correlations=list(utilization.correlations.values()),
        floor=floor,
        notes=notes,
        prometheus_url=prometheus_url,
    )


def _loopback(info: CampaignInfo) -> bool:
    """Whether the target was this machine's loopback (as when the campaign started the server itself)."""
    target = info.target or {}
    return bool(target.get("embedded")) or is_loopback(target.get("grpc") or target.get("http"))


def _step_rows(
    steps: list[StepRecord],
    decompositions: dict[int, Decomposition],
    flags: list[Flag],
    utilization: UtilizationAnalysis,
) -> list[StepRow]:
    """One row of the table of steps per step, with the checks it failed."""
    flags_by_step: dict[int, list[str]] = {}
    for flag in flags:
        flags_by_step.setdefault(flag.step_index, []).append(flag.check)
    rows = []
    for step in steps:
        assert step.latency_s is not None
        point = utilization.points[step.step_index]
        rows.append(
            StepRow(
                step_index=step.step_index,
                series=series_label(step),
                model=step.model,
                load=describe_load(step),
                offered_load=offered_load(step),
                stable=step.stable,
                completed=step.completed,
                error_ratio=step.error_ratio,
                requests_per_s=step.requests_per_s,
                inferences_per_s=step.inferences_per_s,
                p50_s=step.latency_s.p50,
                p99_s=step.latency_s.p99,
                p999_s=step.latency_s.p999,
                mean_s=step.latency_s.mean,
                batch_size_mean=batch_size_mean(step),
                server=step.server,
                decomposition=decompositions[step.step_index],
                server_cores=point.server_cores,
                generator_cores=point.generator_cores,
                gpu_utilization=point.gpu_utilization,
                littles_law_ratio=littles_law_ratio(step),
                flags=flags_by_step.get(step.step_index, []),
            )
        )
    return rows


def write_reports(summary: Summary, campaign: Campaign, output: Path) -> None:
    from analysis.report_html import render_html
    from analysis.report_md import render_markdown

    output.mkdir(parents=True, exist_ok=True)
    summary.output_dir = str(output)
    summary.files = {
        "html": str(output / HTML_FILE),
        "markdown": str(output / MARKDOWN_FILE),
        "summary": str(output / SUMMARY_FILE),
    }
    _write(output / SUMMARY_FILE, json.dumps(summary.to_json(), indent=2, sort_keys=True) + "\n")
    _write(output / MARKDOWN_FILE, render_markdown(summary))
    _write(output / HTML_FILE, render_html(summary, campaign))


def _write(path: Path, text: str) -> None:
    """Write then rename, so a report is never seen half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def analyze_campaign(campaign_dir: Path, output: Path, prometheus_url: str | None = None) -> Summary:
    """Analyse a campaign folder and write report.html, report.md and summary.json into `output`.

    Raises servescope.results.ResultsError when the folder is not a readable campaign, and
    analysis.prometheus.PrometheusError when --prometheus-url cannot be queried.
    """
    campaign = load_campaign(Path(campaign_dir))
    summary = analyze(campaign, prometheus_url)
    write_reports(summary, campaign, Path(output))
    log.info("analysis of %s written to %s", campaign_dir, output)
    return summary


__all__ = ["Summary", "analyze", "analyze_campaign", "format_verdict", "write_reports"]
