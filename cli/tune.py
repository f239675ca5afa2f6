"""`servescope tune`: diagnose, apply the top server-setting recommendation, re-measure at the same load,
and keep going while the recommendations pay, checking every prediction against the measurement.

    servescope tune --model-repository DIR --model NAME [--objective p99<=50ms] [--budget-min 10]
                    --output DIR [--from KEY=VALUE ...] [--concurrency N ...]

Each iteration is a short campaign of one server setting at the same loads (output/iter-N), analysed.
The top recommendation that changes a `servescope serve` setting (batching, delay, max batch, instances,
workers, threads) or the precision variant is applied to the next iteration; its prediction (figure,
current, expected) is recorded beside what the next iteration measured. Tuning stops when no such
recommendation predicts a gain of MIN_GAIN beyond the steps' noise, when a change measured worse than
the best so far (it is undone), or when the time budget would run out. Against `--target` (a server tune
cannot restart, e.g. Triton) it measures and diagnoses once and says what it would change.

Writes output/tune.json (every iteration: settings, recommendation, predicted and measured), output/
best/config.pbtxt (the repository's config with the best settings applied: Triton can load it), the
`servescope serve` command line of the best settings, and output/compare/ (best against the baseline).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.tune_result import Iteration, TuneResult, format_result, write_outputs
from servescope.errors import CommandError, UsageError

MIN_GAIN = 0.05  # a recommendation must predict at least this gain beyond the noise to be tried
SERVER_SETTINGS = {"batching", "adaptive_delay", "max_batch_size", "max_queue_delay_us", "max_queue_size",
                   "instances", "intra_op_threads", "workers"}  # fmt: skip
# Verdicts that describe the load generator or the machine: nothing the server could change.
NOT_THE_SERVER = {"generator-bound", "generator-starved", "machine-contended"}
_OBJECTIVE = re.compile(r"^(p50|p90|p95|p99|p999)\s*<=\s*([0-9.]+)\s*ms$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model-repository", type=Path, default=Path("models"), help="repository to serve from")
    add("--model", required=True, help="the model to tune")
    add("--objective", default="p99<=50ms", help="latency objective, e.g. p99<=50ms or p95<=20ms")
    add("--budget-min", type=float, default=10.0, help="time budget in minutes (measuring and starts)")
    add("--output", type=Path, required=True, help="folder to write (must be new)")
    add("--concurrency", type=int, action="append", default=None, metavar="N",
        help="closed-loop users to measure at, repeatable (default: 1, 8 and 32)")  # fmt: skip
    add("--from", dest="start", action="append", default=[], metavar="KEY=VALUE",
        help="starting server setting, repeatable (ServeFlags names: batching=false, "
        "max_queue_delay_us=20000, workers=1, ...); unset: the server's defaults")  # fmt: skip
    add("--step-duration-s", type=float, default=3.0, help="measured seconds per step")
    add("--warmup-s", type=float, default=1.0, help="warm-up seconds per step")
    add("--target", default=None, help="HOST:PORT of a running server: measure and diagnose only")
    add("--metrics-url", default=None, help="that server's /metrics URL")


def parse_objective(text: str) -> tuple[str, float]:
    match = _OBJECTIVE.match(text.replace(" ", ""))
    if not match:
        raise UsageError(f"--objective {text!r}: expected PERCENTILE<=NUMBERms, e.g. p99<=50ms")
    return match.group(1), float(match.group(2))


def parse_start(items: list[str]) -> dict[str, Any]:
    import yaml

    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in SERVER_SETTINGS:
            raise UsageError(
                f"--from {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(SERVER_SETTINGS))}"
            )
        settings[key] = yaml.safe_load(value)
    return settings


def _score(it: Iteration) -> float:
    """Higher is better: the best throughput within the objective, else the peak's throughput / 10."""
    if it.best_inferences_per_s is not None:
        return it.best_inferences_per_s
    return (it.peak_inferences_per_s or 0.0) / 10


def _campaign_spec(
    args: argparse.Namespace, settings: dict[str, Any], percentile: str, latency_ms: float
) -> dict:
    return {
        "name": "tune",
        "models": [args.model],
        "load": {"concurrency": args.concurrency or [1, 8, 32]},
        "server": [settings],
        "step": {"warmup_s": args.warmup_s, "duration_s": args.step_duration_s,
                 "max_duration_s": args.step_duration_s * 1.5, "stability_percent": 25},
        "objective": {"percentile": percentile, "latency_ms": latency_ms},
    }  # fmt: skip


def _measure(args: argparse.Namespace, spec: dict, folder: Path, progress: Any) -> Any:
    from analysis.pipeline import analyze_campaign
    from loadtest.campaign import CampaignError, run_campaign

    try:
        run_campaign(spec, folder, model_repository=args.model_repository, target=args.target,
                     metrics_url=args.metrics_url, progress=progress)  # fmt: skip
    except CampaignError as exc:
        raise CommandError(str(exc)) from exc
    return analyze_campaign(folder, folder / "analysis")


def _next_change(summary: Any, noise: float) -> Any:
    """The top recommendation of the model's verdict that changes a server setting (or the variant) and
    predicts a gain of MIN_GAIN beyond the noise; None when there is none."""
    for verdict in summary.verdicts:
        for rec in verdict.recommendations:
            change = rec.change
            if change is None or not (set(change.settings()) <= SERVER_SETTINGS or change.setting == "model"):
                continue
            prediction = rec.prediction
            if prediction is None:
                continue
            gain = prediction.ratio - 1 if prediction.figure.endswith("_per_s") else 1 - prediction.ratio
            if gain >= MIN_GAIN + noise:
                return verdict, rec
    return None


def _noise(folder: Path) -> float:
    from analysis.compare import spread
    from servescope.results import read_steps

    steps, _ = read_steps(folder)
    return max((spread(s, "throughput_rps") for s in steps), default=0.0)


def _figure_at(folder: Path, prediction: Any) -> float | None:
    from analysis.steps import describe_load
    from servescope.results import read_steps

    steps, _ = read_steps(folder)
    for step in steps:
        if describe_load(step) == prediction.load and step.latency_s is not None:
            return {
                "requests_per_s": step.requests_per_s,
                "inferences_per_s": step.inferences_per_s,
                "mean_latency_s": step.latency_s.mean,
                "p99_s": step.latency_s.p99,
            }[prediction.figure]
    return None


def _measure_iteration(
    args: argparse.Namespace, spec: dict, index: int, settings: dict[str, Any], folder: Path, progress: Any
) -> tuple[Iteration, Any]:
    """Measure and analyse one server setting: the iteration's record and the analysis' summary."""
    t0 = time.monotonic()
    progress(f"tune {index}: measuring {json.dumps(settings, sort_keys=True)}")
    summary = _measure(args, spec, folder, progress)
    verdict = summary.verdicts[0] if summary.verdicts else None
    curve = summary.curves[0] if summary.curves else None
    it = Iteration(
        index=index, settings=dict(settings), campaign=str(folder),
        verdict=verdict.kind if verdict else None,
        best_inferences_per_s=curve.best_inferences_per_s if curve else None,
        peak_inferences_per_s=max((s.inferences_per_s for s in summary.steps), default=None),
        wall_s=time.monotonic() - t0,
    )  # fmt: skip
    return it, summary


def _check_prediction(previous: Iteration, rec: Any, folder: Path, index: int, progress: Any) -> None:
    """Record beside the iteration that made it what this iteration measured of its prediction."""
    measured = _figure_at(folder, rec.prediction)
    previous.measured = measured
    if measured is not None and rec.prediction.expected:
        previous.prediction_error = measured / rec.prediction.expected - 1
    progress(
        f"tune {index}: predicted {rec.prediction.figure} {rec.prediction.expected:.4g}, measured "
        f"{measured if measured is None else format(measured, '.4g')} "
        f"(was {rec.prediction.current:.4g})"
    )


def tune(args: argparse.Namespace, progress: Any = print) -> TuneResult:
    from analysis.summary import plain

    percentile, latency_ms = parse_objective(args.objective)
    settings = {"batching": True, **parse_start(args.start)}
    budget_s = args.budget_min * 60
    started = time.monotonic()
    result = TuneResult(args.model, args.objective)
    tried: list[dict[str, Any]] = []
    pending = None  # (iteration, recommendation) whose prediction the next iteration checks
    while True:
        index = len(result.iterations)
        folder = args.output / f"iter-{index}"
        spec = _campaign_spec(args, settings, percentile, latency_ms)
        it, summary = _measure_iteration(args, spec, index, settings, folder, progress)
        result.iterations.append(it)
        tried.append(dict(settings))
        if pending is not None:
            _check_prediction(*pending, folder, index, progress)
        best = max(result.iterations, key=_score)
        result.best_index = best.index
        if args.target:
            result.stopped_because = (
                "the target is a running server: tune measures and diagnoses, it cannot restart it"
            )
            found = _next_change(summary, _noise(folder))
            if found is not None:
                it.recommendation, it.change = found[1].text, plain(found[1].change)
                it.prediction = plain(found[1].prediction)
            break
        if it.verdict in NOT_THE_SERVER:
            result.stopped_because = (
                f"iteration {index} measured the load generator or the machine, not the server "
                f"({it.verdict}): tune on a machine where nothing else runs, or with the load generator "
                "elsewhere"
            )
            break
        if it is not best:
            result.stopped_because = (
                f"the change measured worse than iteration {best.index}: undone, tuning stops"
            )
            break
        found = _next_change(summary, _noise(folder))
        if found is None:
            result.stopped_because = f"no recommendation predicts a gain of {MIN_GAIN:.0%} beyond the noise"
            break
        _verdict, rec = found
        it.recommendation, it.change, it.prediction = rec.text, plain(rec.change), plain(rec.prediction)
        proposed = dict(settings)
        if rec.change.setting == "model":
            result.stopped_because = (
                f"the top change is another variant ({rec.change.value}): tune it with --model"
            )
            break
        proposed.update(rec.change.settings())
        if proposed in tried:
            result.stopped_because = "the top change was tried already"
            break
        elapsed = time.monotonic() - started
        if elapsed + it.wall_s * 1.2 > budget_s:
            result.stopped_because = f"the budget of {args.budget_min:g} min would run out"
            break
        settings = proposed
        pending = (it, rec)
    return result


def run(args: argparse.Namespace) -> int:
    if args.output.exists() and any(args.output.iterdir()):
        raise UsageError(f"--output {args.output}: not empty; choose a new folder")
    if args.budget_min <= 0:
        raise UsageError(f"--budget-min {args.budget_min:g}: must be greater than 0")
    if not args.target and not (args.model_repository / args.model / "config.pbtxt").is_file():
        raise UsageError(f"--model {args.model!r}: not in --model-repository {args.model_repository}")
    if bool(args.target) != bool(args.metrics_url):
        raise UsageError("--target and --metrics-url go together")
    args.output.mkdir(parents=True, exist_ok=True)
    result = tune(args, progress=lambda line: print(line, flush=True))
    write_outputs(args, result)
    print(format_result(result))
    if args.target:
        first = result.iterations[0]
        if first.recommendation:
            print(f"Would change: {first.recommendation}")
        print("servescope tune cannot apply it: the target is a server it did not start.")
    compare = args.output / "compare" / "compare.html"
    print(f"Written: {args.output / 'tune.json'}, {args.output / 'best'}, {compare}")
    return 0


__all__ = ["add_arguments", "run", "tune"]


@dataclass
class Verification:
    """One recommendation applied and re-measured: what it predicted, what was measured."""

    model: str
    series: str
    recommendation: str
    flag: str
    figure: str
    load: str
    current: float
    expected: float
    measured: float | None
    campaign: str
    compare_html: str
    other_cores: float | None = None  # what other processes used while it was re-measured

    @property
    def error(self) -> float | None:
        return None if self.measured is None or not self.expected else self.measured / self.expected - 1

    def line(self) -> str:
        measured = "not measured" if self.measured is None else f"{self.measured:.4g}"
        error = "" if self.error is None else f" ({self.error:+.0%} against the prediction)"
        from analysis.thresholds import CONTENDED_OTHER_CORES

        contended = (
            f"; other processes used {self.other_cores:.2f} cores meanwhile, so the check is not fair: "
            "repeat it on a quiet machine"
            if self.other_cores is not None and self.other_cores >= CONTENDED_OTHER_CORES
            else ""
        )
        return (
            f"{self.model}: {self.flag}: {self.figure} at {self.load} was {self.current:.4g}, predicted "
            f"{self.expected:.4g}, measured {measured}{error}{contended}"
        )


def verify_top_recommendation(
    campaign_dir: Path,
    summary: Any,
    model: str,
    series_contains: str,
    out: Path,
    model_repository: Path,
    progress: Any = print,
) -> Verification | None:
    """Apply the top server-setting recommendation of one series of a campaign, re-measure at the load
    its prediction names (same step timing), and compare: None when the series gives no such advice."""
    from analysis.compare import compare_campaigns, write_json
    from analysis.compare_report import render_html
    from loadtest.campaign import run_campaign
    from servescope import results

    verdict = next((v for v in summary.verdicts if v.model == model and series_contains in v.series), None)
    if verdict is None:
        return None
    applicable = [
        r for r in verdict.recommendations
        if r.change is not None and r.prediction is not None and set(r.change.settings()) <= SERVER_SETTINGS
    ]  # fmt: skip
    rec = applicable[0] if applicable else None
    if rec is None:
        return None
    info = results.read_campaign(campaign_dir)
    steps, _ = results.read_steps(campaign_dir)
    step = next(s for s in steps if s.step_index == rec.prediction.step_index)
    recorded = step.server_settings
    flags: dict[str, Any] = {
        name: getattr(recorded, name)
        for name in ("batching", "max_batch_size", "max_queue_delay_us", "instances", "workers")
        if getattr(recorded, name) is not None
    }
    if recorded.batching and recorded.adaptive_delay is not None:
        flags["adaptive_delay"] = recorded.adaptive_delay
    flags.update(rec.change.settings())
    load = step.load
    spec = {
        "name": "verify",
        "models": [model],
        "client_batch_sizes": [step.client_batch_size],
        "load": {"concurrency": [load.users]} if load.mode == "closed" else {"rates_rps": [load.rate_rps]},
        "server": [flags],
        "step": info.config.get("step", {}),
        "objective": {
            "percentile": info.objective["percentile"],
            "latency_ms": info.objective["latency_s"] * 1e3,
        },
    }
    progress(f"verify: {rec.change.flag or rec.change.setting} on {model} at {rec.prediction.load}")
    run_campaign(spec, out / "campaign", model_repository=model_repository, progress=progress)
    measured = _figure_at(out / "campaign", rec.prediction)
    remeasured, _ = results.read_steps(out / "campaign")
    other_cores = max((s.cpu.other_cores or 0.0 for s in remeasured if s.cpu is not None), default=None)
    baseline = out / "baseline"  # the one step the prediction was made at, as a campaign of its own
    baseline.mkdir(parents=True, exist_ok=True)
    results.write_campaign(info, baseline)
    results.append_step(step, baseline)
    comparison = compare_campaigns(baseline, out / "campaign")
    (out / "compare").mkdir(parents=True, exist_ok=True)
    (out / "compare" / "compare.html").write_text(render_html(comparison))
    write_json(comparison, out / "compare" / "compare.json")
    return Verification(
        model=model, series=verdict.series, recommendation=rec.text,
        flag=rec.change.flag or rec.change.setting,
        figure=rec.prediction.figure, load=rec.prediction.load, current=rec.prediction.current,
        expected=rec.prediction.expected, measured=measured, campaign=str(out / "campaign"),
        compare_html=str(out / "compare" / "compare.html"), other_cores=other_cores,
    )  # fmt: skip
