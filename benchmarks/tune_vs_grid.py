"""Tune against a full grid: does `servescope tune` find a setting as good as brute force, in less time, and
do its predictions hold? Measured on this machine in one run:

  1. for each planted start (batching off at 32 users; a 20 ms batch window at 1 user), `servescope tune`
     from it: every prediction beside what the next iteration measured, the best setting, the wall time;
  2. one campaign over the grid of the settings tune chooses from (batching off; batching on with
     max_batch_size 8, 16, 32, 64 x max_queue_delay_us 500, 1000, 2000, 20000) at the same loads, analysed:
     the best series within the objective and the grid's wall time;
  3. ratios: tune's best / the grid's best (target >= 0.9), tune's time / the grid's (target <= 1/3), and
     each prediction's error (target within 25%).

Prints a table and writes JSON (benchmarks/results/tune_vs_grid.json).

    .venv/bin/python benchmarks/tune_vs_grid.py --model-repository models
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from analysis.pipeline import analyze_campaign  # noqa: E402
from cli.main import main as servescope  # noqa: E402
from loadtest.campaign import run_campaign  # noqa: E402

PLANTS = {
    "batching off at 32 users": {"from": ["batching=false"], "concurrency": [32]},
    "a 20 ms window at 1 user": {"from": ["max_queue_delay_us=20000"], "concurrency": [1]},
}
GRID_BATCH_SIZES = (8, 16, 32, 64)
GRID_DELAYS_US = (500, 1000, 2000, 20000)


def grid_servers() -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = [{"batching": False}]
    for size in GRID_BATCH_SIZES:
        for delay in GRID_DELAYS_US:
            servers.append({"batching": True, "max_batch_size": size, "max_queue_delay_us": delay})
    return servers


def run_tune(args: argparse.Namespace, name: str, plant: dict, folder: Path) -> dict[str, Any]:
    argv = ["tune", "--model-repository", str(args.model_repository), "--model", args.model,
            "--objective", args.objective, "--budget-min", str(args.budget_min), "--output", str(folder),
            "--step-duration-s", str(args.step_duration_s), "--warmup-s", str(args.warmup_s)]  # fmt: skip
    for item in plant["from"]:
        argv += ["--from", item]
    for users in plant["concurrency"]:
        argv += ["--concurrency", str(users)]
    print(f"tune from {name}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = servescope(argv)
    wall_s = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"tune from {name} failed (exit {code}):\n{printed.getvalue()[-3000:]}")
    result = json.loads((folder / "tune.json").read_text())
    best = result["iterations"][result["best_index"]]
    predictions = [
        {
            "change": it["change"]["flag"] or it["change"]["setting"],
            "figure": it["prediction"]["figure"],
            "current": it["prediction"]["current"],
            "expected": it["prediction"]["expected"],
            "measured": it["measured"],
            "error": it["prediction_error"],
        }
        for it in result["iterations"]
        if it.get("prediction") and it.get("change")
    ]
    return {
        "plant": name,
        "wall_s": wall_s,
        "iterations": len(result["iterations"]),
        "stopped_because": result["stopped_because"],
        "best_settings": best["settings"],
        "best_inferences_per_s": best["best_inferences_per_s"],
        "predictions": predictions,
        "verdicts": [it["verdict"] for it in result["iterations"]],
    }


def run_grid(args: argparse.Namespace, name: str, plant: dict, folder: Path) -> dict[str, Any]:
    servers = grid_servers()
    percentile, _, latency = args.objective.partition("<=")
    spec = {
        "name": "grid",
        "models": [args.model],
        "load": {"concurrency": plant["concurrency"]},
        "server": servers,
        "step": {"warmup_s": args.warmup_s, "duration_s": args.step_duration_s,
                 "max_duration_s": args.step_duration_s * 1.5, "stability_percent": 25},
        "objective": {"percentile": percentile, "latency_ms": float(latency.removesuffix("ms"))},
    }  # fmt: skip
    print(f"grid for {name}: {len(servers)} server settings x {plant['concurrency']} users", flush=True)
    started = time.monotonic()
    run_campaign(spec, folder, model_repository=args.model_repository, progress=lambda line: None)
    wall_s = time.monotonic() - started
    summary = analyze_campaign(folder, folder / "analysis")
    scored = [(c.best_inferences_per_s or 0.0, c.series) for c in summary.curves]
    best_rate, best_series = max(scored)
    return {"plant": name, "wall_s": wall_s, "settings": len(servers), "best_inferences_per_s": best_rate,
            "best_series": best_series}  # fmt: skip


def main() -> int:
    default_repository = REPO_ROOT / "models"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-repository", type=Path, default=default_repository,
                        help="exported models (servescope export)")  # fmt: skip
    parser.add_argument("--model", default="sentiment_fp32", help="model to tune")
    parser.add_argument("--objective", default="p99<=50ms", help="latency objective")
    parser.add_argument("--budget-min", type=float, default=5.0, help="tune's budget per plant")
    parser.add_argument("--step-duration-s", type=float, default=3.0, help="measured seconds per step")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="warm-up seconds per step")
    parser.add_argument("--plant", action="append", choices=sorted(PLANTS), default=None,
                        help="planted start to run, repeatable (default: all)")  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "tune_vs_grid.json"
    )
    args = parser.parse_args()
    if not (args.model_repository / args.model / "config.pbtxt").is_file():
        print(
            f"--model {args.model!r}: not in {args.model_repository} (run servescope export)", file=sys.stderr
        )
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="tune-vs-grid-") as work:
        for name in args.plant or list(PLANTS):
            plant = PLANTS[name]
            slug = name.replace(" ", "-")
            tuned = run_tune(args, name, plant, Path(work) / f"tune-{slug}")
            grid = run_grid(args, name, plant, Path(work) / f"grid-{slug}")
            rows.append({
                "plant": name, "tune": tuned, "grid": grid,
                "best_ratio": (tuned["best_inferences_per_s"] or 0.0) / grid["best_inferences_per_s"]
                if grid["best_inferences_per_s"] else None,
                "time_ratio": tuned["wall_s"] / grid["wall_s"],
            })  # fmt: skip
    for row in rows:
        tuned, grid = row["tune"], row["grid"]
        print(f"\n{row['plant']}:")
        for p in tuned["predictions"]:
            error = "not measured" if p["error"] is None else f"{p['error']:+.1%}"
            print(f"  {p['change']}: {p['figure']} {p['current']:.4g} -> predicted {p['expected']:.4g}, "
                  f"measured {p['measured'] if p['measured'] is None else format(p['measured'], '.4g')} "
                  f"({error})")  # fmt: skip
        print(f"  tune: {tuned['iterations']} iterations in {tuned['wall_s']:.0f} s, best "
              f"{tuned['best_inferences_per_s'] or 0:.0f} inf/s with {json.dumps(tuned['best_settings'])}; "
              f"stopped: {tuned['stopped_because']}")  # fmt: skip
        print(f"  grid: {grid['settings']} settings in {grid['wall_s']:.0f} s, best "
              f"{grid['best_inferences_per_s']:.0f} inf/s ({grid['best_series']})")  # fmt: skip
        print(f"  tune/grid: best {row['best_ratio']:.2f}x (target >= 0.90), time {row['time_ratio']:.2f}x "
              "(target <= 0.33)")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "command": " ".join(sys.argv), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "load_average_1m": os.getloadavg()[0], "rows": rows,
    }, indent=2) + "\n")  # fmt: skip
    print(f"\nwritten {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
