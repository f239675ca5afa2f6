"""A `servescope tune`'s record (cli/tune.py runs it) and what it leaves behind: output/tune.json, the best
settings as a config.pbtxt Triton can load and as a `servescope serve` command line, output/compare/
(best against the baseline), and the text summary it prints."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Iteration:
    index: int
    settings: dict[str, Any]
    campaign: str
    verdict: str | None = None
    best_inferences_per_s: float | None = None
    peak_inferences_per_s: float | None = None
    recommendation: str | None = None  # what this iteration's analysis says to do next
    change: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    measured: float | None = None  # the prediction's figure, measured by the next iteration
    prediction_error: float | None = None  # measured / expected - 1
    wall_s: float = 0.0


@dataclass
class TuneResult:
    model: str
    objective: str
    iterations: list[Iteration] = field(default_factory=list)
    best_index: int = 0
    stopped_because: str = ""
    serve_command: list[str] = field(default_factory=list)


def write_outputs(args: argparse.Namespace, result: TuneResult) -> None:
    from analysis.compare import compare_campaigns, write_json
    from analysis.compare_report import render_html, render_markdown
    from analysis.summary import plain
    from servescope.repository import list_models, write_config
    from servescope.settings import ServeFlags, serve_argv

    best = result.iterations[result.best_index]
    flags = ServeFlags(**{k: v for k, v in best.settings.items() if k in ServeFlags.keys()})  # noqa: SIM118
    result.serve_command = serve_argv(["servescope"], str(args.model_repository), [args.model], flags,
                                      host="0.0.0.0", grpc_port=8001, metrics_port=8002,
                                      http_port=8000)  # fmt: skip
    best_dir = args.output / "best"
    best_dir.mkdir(parents=True, exist_ok=True)
    if not args.target:
        entry = next(e for e in list_models(args.model_repository) if e.name == args.model)
        write_config(best_config(entry.config, flags), best_dir / "config.pbtxt")
    (best_dir / "serve.sh").write_text(" ".join(result.serve_command) + "\n")
    comparison = compare_campaigns(Path(result.iterations[0].campaign), Path(best.campaign))
    compare_dir = args.output / "compare"
    compare_dir.mkdir(parents=True, exist_ok=True)
    (compare_dir / "compare.md").write_text(render_markdown(comparison))
    (compare_dir / "compare.html").write_text(render_html(comparison))
    write_json(comparison, compare_dir / "compare.json")
    (args.output / "tune.json").write_text(json.dumps(plain(result), indent=2, sort_keys=True) + "\n")


def best_config(config: Any, flags: Any) -> Any:
    """The repository's ModelConfig with the tuned settings applied, as Triton would read them."""
    from servescope.protocol import model_config_pb2 as mc

    out = mc.ModelConfig()
    out.CopyFrom(config)
    if flags.max_batch_size is not None:
        out.max_batch_size = flags.max_batch_size
    if not flags.batching:
        out.ClearField("dynamic_batching")
    else:
        batching = out.dynamic_batching
        if flags.max_queue_delay_us is not None:
            batching.max_queue_delay_microseconds = flags.max_queue_delay_us
        if flags.max_queue_size is not None:
            batching.default_queue_policy.max_queue_size = flags.max_queue_size
        sizes = [s for s in batching.preferred_batch_size if s <= out.max_batch_size]
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(sizes)
    if flags.instances is not None:
        del out.instance_group[:]
        out.instance_group.add(count=flags.instances, kind=mc.ModelInstanceGroup.KIND_CPU)
    return out


def format_result(result: TuneResult) -> str:
    lines = [f"Tuning {result.model} for {result.objective}:"]
    for it in result.iterations:
        lines.append(
            f"  {it.index}: {json.dumps(it.settings, sort_keys=True)} -> {it.verdict}, best within the "
            "objective "
            f"{'none' if it.best_inferences_per_s is None else f'{it.best_inferences_per_s:.0f}'} "
            "inferences/s"
        )
        prediction, change = it.prediction, it.change or {}
        if prediction is not None:
            measured = "not measured" if it.measured is None else f"{it.measured:.4g}"
            error = (
                "" if it.prediction_error is None else f" ({it.prediction_error:+.0%} against the prediction)"
            )
            lines.append(
                f"     next: {change['flag'] or change['setting']}: predicted "
                f"{prediction['figure']} "
                f"{prediction['expected']:.4g} (from {prediction['current']:.4g}), measured "
                f"{measured}{error}"
            )
    best = result.iterations[result.best_index]
    lines.append(f"Stopped: {result.stopped_because}.")
    lines.append(f"Best: iteration {best.index}, {json.dumps(best.settings, sort_keys=True)}")
    lines.append(f"Serve it with: {' '.join(result.serve_command)}")
    return "\n".join(lines)
