"""report.md for one GPU run: the provider check, in-process table, served table, derived ratios and the
campaign verdicts, from the section results (nothing measured here)."""

from __future__ import annotations

from typing import Any

from benchmarks.gpu.campaign import CampaignResult
from benchmarks.gpu.inprocess import InProcessResult
from benchmarks.gpu.served import ServedResult


def ratios(in_process: InProcessResult, served: ServedResult) -> dict[str, float]:
    """Served best / in-process best of the served model, and batching on / off at the highest
    concurrency measured with both (same worker count)."""
    out: dict[str, float] = {}
    ceiling = max((p.inferences_per_s for p in in_process.points if p.model == served.model), default=0.0)
    best = max((s.throughput_rps for s in served.steps if not s.errors), default=0.0)
    if ceiling > 0 and best > 0:
        out["served_best_vs_in_process_best"] = best / ceiling
    off = {(s.workers, s.concurrency): s for s in served.steps if not s.batching}
    on = [s for s in served.steps if s.batching and (s.workers, s.concurrency) in off]
    if on:
        top = max(on, key=lambda s: s.concurrency)
        base = off[(top.workers, top.concurrency)].throughput_rps
        if base > 0:
            out[f"batching_on_vs_off_c{top.concurrency}"] = top.throughput_rps / base
    return out


def markdown(
    meta: dict[str, Any], in_process: InProcessResult, served: ServedResult, campaign: CampaignResult
) -> str:
    env = meta["environment"]
    lines = [
        f"# GPU run: device {env['device']}{' (quick)' if meta['quick'] else ''}",
        "",
        f"`{meta['command']}`, started {meta['started_at']}, {meta['wall_s']:.1f} s of a "
        f"{meta['budget_s']:.0f} s budget. onnxruntime {env['onnxruntime']} (providers "
        f"{', '.join(env['available_providers'])}), GPUs: {', '.join(env['gpus']) or 'none'}, "
        f"{env['cpu_count']} cores, Python {env['python']}.",
        "",
        "## Providers",
        "",
        "| model | session providers | executed nodes by provider | ops on the CPU | warning |",
        "|---|---|---|---|---|",
    ]
    for pl in in_process.placements:
        nodes = ", ".join(f"{k}: {v}" for k, v in pl.nodes_by_provider.items()) or pl.error or ""
        lines.append(
            f"| {pl.model} | {', '.join(pl.providers)} | {nodes} | {', '.join(pl.cpu_ops)} | "
            f"{pl.warning or ''} |"
        )
    lines += [
        "",
        "## In-process ONNX Runtime (inferences/s = batch / median latency)",
        "",
        "| model | mode | batch | p50 ms | inferences/s |",
        "|---|---|---|---|---|",
    ]
    for pt in in_process.points:
        lines.append(
            f"| {pt.model} | {pt.mode} | {pt.batch_size} | {pt.p50_s * 1e3:.3f} | {pt.inferences_per_s:.0f} |"
        )
    lines += [""] + [f"- {line}" for line in in_process.skipped]
    lines += [
        "",
        f"## Served: {served.model} on `--device {served.device}`, lean gRPC client, batch-1 "
        f"requests, {served.duration_s:g} s steps",
        "",
        f"GPU gauges: {served.gpu_gauges}. Providers in servescope_model_info: "
        f"{', '.join(f'{k}: {v}' for k, v in served.provider.items()) or 'none'}.",
        "",
        "| batching | workers | concurrency | req/s | p50 ms | p99 ms | mean batch | server cores | "
        "GPU util | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in served.steps:
        gpu = "-" if s.gpu_utilization_ratio is None else f"{s.gpu_utilization_ratio:.0%}"
        lines.append(
            f"| {'on' if s.batching else 'off'} | {s.workers} | {s.concurrency} | {s.throughput_rps:.0f} | "
            f"{s.p50_s * 1e3:.2f} | {s.p99_s * 1e3:.2f} | {s.server_mean_batch_size:.1f} | "
            f"{s.server_cores:.2f} | {gpu} | {sum(s.errors.values())} |"
        )
    lines += [""] + [f"- {line}" for line in served.skipped]
    lines += ["", "## Ratios", ""]
    lines += [f"- {k}: {v:.2f}" for k, v in ratios(in_process, served).items()]
    lines += ["", "## Campaign", ""]
    if campaign.reason:
        lines.append(f"- {campaign.reason}")
    if campaign.ran:
        lines.append(
            f"- {campaign.steps} steps in {campaign.campaign_dir}, analysis in {campaign.analysis_dir}"
        )
    for v in campaign.verdicts:
        lines.append(f"- verdict {v['model']} / {v['series']}: **{v['kind']}**: {v['title']}")
    return "\n".join(lines) + "\n"
