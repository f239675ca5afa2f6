"""How many server replicas a target load needs, from a campaign's measured per-instance capacity.

    python deploy/replicas.py CAMPAIGN_DIR --target-rps 5000 [--model sentiment_int8] [--headroom 0.7]

Capacity of one server (one pod) for a configuration = the highest throughput among the campaign's
steps that were stable, had at most --max-error-ratio failed requests and met the campaign's latency
objective (e.g. p99 <= 50 ms, client side). Then

    replicas = ceil(target_rps / (headroom * capacity_rps)) + spare

headroom < 1 keeps each pod below its measured limit (bursts, noisy neighbours, a rolling update);
spare adds pods that may fail without breaking the objective (N+1). It also prints the server-side
in-flight requests per pod at that operating point (Little's law: throughput x mean server latency),
the number to put in the HorizontalPodAutoscaler target (deploy/k8s/base/hpa.yaml).

A capacity measured with the load generator on the same machine, or with the generator saturated, is
a lower bound; the table says so.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from servescope.results import ResultsError, StepRecord, read_campaign, read_steps

PERCENTILES = {"p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p99.9": "p999", "p999": "p999"}


@dataclass
class Capacity:
    """The best step of one (model, client batch, server settings) configuration."""

    model: str
    settings: str
    step: StepRecord
    latency_s: float
    inflight_per_pod: float | None
    lower_bound: bool


def settings_label(step: StepRecord) -> str:
    s = step.server_settings
    if s.batching is False:
        batching = "batching off"
    else:
        batching = f"batching max {s.max_batch_size} delay {s.max_queue_delay_us} us"
    instances = f", {s.instances} instances" if s.instances else ""
    device = f" on {s.device}" if s.device else ""
    return f"{batching}{instances}{device}"


def offered_load(step: StepRecord) -> float:
    """Users (closed loop) or requests/s (open loop) that the step offered."""
    return float(step.load.users if step.load.mode == "closed" else step.load.rate_rps or 0)


def capacities(
    steps: list[StepRecord],
    *,
    percentile: str,
    objective_s: float,
    max_error_ratio: float,
    batch_size: int,
    include_unstable: bool = False,
) -> tuple[list[Capacity], list[str]]:
    """Best qualifying step per configuration, and one line per configuration with none."""
    attribute = PERCENTILES[percentile]
    groups: dict[tuple[str, str], list[StepRecord]] = {}
    for step in steps:
        if step.client_batch_size == batch_size:
            groups.setdefault((step.model, settings_label(step)), []).append(step)
    found, missing = [], []
    for (model, label), group in sorted(groups.items()):
        ok = [
            step
            for step in group
            if (step.stable or include_unstable)
            and step.latency_s is not None
            and getattr(step.latency_s, attribute) <= objective_s
            and step.error_ratio <= max_error_ratio
        ]
        if not ok:
            kind = "step" if include_unstable else "stable step"
            missing.append(f"{model} [{label}]: no {kind} meets {percentile} <= {objective_s * 1000:g} ms")
            continue
        best = max(ok, key=lambda step: step.requests_per_s)
        heaviest = max(group, key=offered_load)
        inflight = None
        if best.server is not None and best.server.request_mean_s is not None:
            inflight = best.requests_per_s * best.server.request_mean_s
        found.append(
            Capacity(
                model=model,
                settings=label,
                step=best,
                latency_s=getattr(best.latency_s, attribute),
                inflight_per_pod=inflight,
                # The most heavily loaded step still met the objective: the limit lies beyond it.
                lower_bound=best.cpu.generator_saturated or offered_load(best) >= offered_load(heaviest),
            )
        )
    return found, missing


def replicas_needed(target_rps: float, capacity_rps: float, headroom: float, spare: int) -> int:
    if capacity_rps <= 0:
        raise ValueError(f"capacity_rps must be positive, got {capacity_rps}")
    return math.ceil(target_rps / (headroom * capacity_rps)) + spare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("campaign", type=Path, help="campaign folder (campaign.json + steps.jsonl)")
    parser.add_argument("--target-rps", type=float, required=True, help="load to serve, requests/s")
    parser.add_argument("--model", help="only this model (default: every model of the campaign)")
    parser.add_argument("--batch-size", type=int, default=1, help="client batch size of the load")
    parser.add_argument(
        "--headroom", type=float, default=0.7, help="share of the capacity to plan for (0..1]"
    )
    parser.add_argument("--spare", type=int, default=1, help="extra replicas that may fail (N+spare)")
    parser.add_argument("--max-error-ratio", type=float, default=0.01, help="errors allowed in a step")
    parser.add_argument(
        "--include-unstable",
        action="store_true",
        help="also use steps whose windows disagreed (noisy machine); marked with * in the table",
    )
    args = parser.parse_args(argv)
    if not 0 < args.headroom <= 1:
        parser.error(f"--headroom must be in (0, 1], got {args.headroom}")
    try:
        campaign = read_campaign(args.campaign)
        steps, _skipped = read_steps(args.campaign)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    percentile = campaign.objective.get("percentile", "p99")
    objective_s = float(campaign.objective.get("latency_s", campaign.objective.get("latency_ms", 50) / 1000))
    if args.model:
        steps = [step for step in steps if step.model == args.model]
    found, missing = capacities(
        steps,
        percentile=percentile,
        objective_s=objective_s,
        max_error_ratio=args.max_error_ratio,
        batch_size=args.batch_size,
        include_unstable=args.include_unstable,
    )
    machine = campaign.machine
    print(
        f"campaign {campaign.name}: {machine.cpu_count} cores ({machine.cpu_model}),"
        f" GPU {machine.gpu_name or 'none'};"
        f" objective {percentile} <= {objective_s * 1000:g} ms; target {args.target_rps:g} req/s at batch"
        f" {args.batch_size}; headroom {args.headroom:g}, spare {args.spare}"
    )
    header = f"{'model':<16} {'server settings':<52} {'capacity':>10} {percentile:>8}"
    print(f"{header} {'in-flight':>9} {'replicas':>8}")
    for item in sorted(found, key=lambda c: -c.step.requests_per_s):
        count = replicas_needed(args.target_rps, item.step.requests_per_s, args.headroom, args.spare)
        inflight = f"{item.inflight_per_pod:.1f}" if item.inflight_per_pod is not None else "-"
        marks = (">" if item.lower_bound else " ") + (" " if item.step.stable else "*")
        print(
            f"{item.model:<16} {item.settings:<52} {marks}{item.step.requests_per_s:>8.0f} "
            f"{item.latency_s * 1000:>6.1f}ms {inflight:>9} {count:>8}"
        )
    for line in missing:
        print(f"  {line}")
    if any(item.lower_bound for item in found):
        print("> : the best step was the heaviest one measured, or the generator was saturated:")
        print("    capacity is at least this (measure higher load to find the limit).")
    if any(not item.step.stable for item in found):
        print("* : from a step whose measurement windows disagreed more than the campaign allows.")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
