"""Side-by-side benchmark: servescope against Triton (PyTriton) and Seldon MLServer on one ONNX model.

    .venv/bin/python benchmarks/peers/run.py            # full: sweep, 3 rounds x 4 points x 10 s
    .venv/bin/python benchmarks/peers/run.py --quick    # a few minutes: short points, one round
    .venv/bin/python benchmarks/peers/run.py --drivers lean,perf_analyzer   # both clients, side by side

Each server serves the same exported fp32 model on loopback, one at a time. A small sweep first
picks each server's best batching settings on this machine. Then, in every round, each server in
turn (order rotated per round) is started with those settings and measured with the same closed-loop
client at batch-1 requests and each concurrency: the lean grpc.aio client (benchmarks/lean_client.py,
driver `lean`) and/or NVIDIA perf_analyzer (pa_driver.py, driver `perf_analyzer`), each point by
each driver in turn on the same server start. Every run names its driver; ratios are per driver. Writes
results/latest.json and results/latest.png beside this file and prints a table with medians,
min-max over rounds, and servescope/peer ratios. Peer environments are created on first use in
benchmarks/peers/.venvs/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent.parent):  # the harness modules, then servescope's own packages
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import chart  # noqa: E402
import harness  # noqa: E402
import pa_driver  # noqa: E402
import servers  # noqa: E402
import stats  # noqa: E402
import venvs  # noqa: E402

REPO_ROOT = HERE.parent.parent
AUTO_REPOSITORY = HERE / ".venvs" / "model-repository"

log = logging.getLogger("peers")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="exported repository holding --model; default: ./models if it has it, else one exported "
        "once with the synthetic dataset into benchmarks/peers/.venvs/model-repository",
    )
    parser.add_argument("--model", default="sentiment_fp32", help="model name served by all three")
    parser.add_argument(
        "--servers", default=",".join(servers.SERVERS), help="comma-separated servers to compare"
    )
    parser.add_argument("--concurrency", default="1,8,32,64", help="comma-separated client concurrencies")
    parser.add_argument(
        "--drivers",
        default="lean",
        help=f"comma-separated load clients, each point measured by each: {', '.join(pa_driver.DRIVERS)}",
    )
    parser.add_argument("--rounds", type=int, default=3, help="times the whole interleaved round runs")
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds per point")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="unmeasured seconds before each point")
    parser.add_argument("--sweep-point-s", type=float, default=4.0, help="measured seconds per sweep point")
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep; use default settings")
    parser.add_argument("--locust-users", type=int, default=32, help="users of the Locust second opinion")
    parser.add_argument("--no-locust", action="store_true", help="skip the Locust second opinion")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="try it out: one round, 3 s points after 1 s warm-up, 2 s sweep points, 5 s Locust point",
    )
    parser.add_argument("--output", type=Path, default=HERE / "results", help="folder for latest.json/.png")
    parser.add_argument("--workdir", type=Path, default=None, help="server logs and settings (default: temp)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration_s, args.warmup_s, args.sweep_point_s = 1, 3.0, 1.0, 2.0
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in args.server_list if s not in servers.SERVERS]
    if unknown:
        parser.error(f"--servers: unknown server(s) {unknown}; choose from {list(servers.SERVERS)}")
    args.driver_list = [d.strip() for d in args.drivers.split(",") if d.strip()]
    unknown = [d for d in args.driver_list if d not in pa_driver.DRIVERS]
    if unknown or not args.driver_list:
        parser.error(f"--drivers: unknown driver(s) {unknown}; choose from {list(pa_driver.DRIVERS)}")
    try:
        args.concurrency_list = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--concurrency: expected comma-separated integers, got {args.concurrency!r}")
    if not args.concurrency_list or min(args.concurrency_list) < 1:
        parser.error(f"--concurrency: every value must be >= 1, got {args.concurrency!r}")
    if args.rounds < 1:
        parser.error(f"--rounds: must be >= 1, got {args.rounds}")
    return args


def resolve_repository(args: argparse.Namespace) -> Path:
    """The repository to serve: the one given, ./models, or one exported once (synthetic data)."""
    if args.model_repository is not None:
        if not (args.model_repository / args.model).is_dir():
            raise SystemExit(f"--model-repository: {args.model_repository} has no model {args.model!r}")
        return args.model_repository.resolve()
    for candidate in (REPO_ROOT / "models", AUTO_REPOSITORY):
        if (candidate / args.model / "1" / "model.onnx").is_file():
            return candidate
    log.warning("no exported model found; exporting one into %s (a few minutes, once)", AUTO_REPOSITORY)
    cmd = [
        str(Path(sys.executable).parent / "servescope"),
        "export",
        "--dataset",
        "synthetic",
        "--epochs",
        "2",
        "--train-samples",
        "5000",
        "--output",
        str(AUTO_REPOSITORY),
        "--force",
    ]
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    return AUTO_REPOSITORY


def point_groups(
    settings: dict[str, dict[str, Any]], concurrencies: list[int]
) -> list[tuple[dict, list[int]]]:
    """(settings, concurrencies) per server start: concurrency 1 with the single-client settings, the
    rest with the load settings; one start when both are the same."""
    single = [c for c in concurrencies if c == 1]
    load = [c for c in concurrencies if c != 1]
    if settings["single_client"] == settings["load"]:
        return [(settings["load"], concurrencies)]
    return [(s, cs) for s, cs in ((settings["single_client"], single), (settings["load"], load)) if cs]


def run_rounds(args: argparse.Namespace, repository: Path, chosen: dict[str, dict], workdir: Path) -> tuple:
    runs: list[dict[str, Any]] = []
    locust: list[dict[str, Any]] = []
    starts: dict[str, list[float]] = {name: [] for name in args.server_list}
    failures: list[dict[str, Any]] = []
    for round_index in range(1, args.rounds + 1):
        shift = (round_index - 1) % len(args.server_list)
        order = args.server_list[shift:] + args.server_list[:shift]
        for name in order:
            for group_index, (settings, concurrencies) in enumerate(
                point_groups(chosen[name], args.concurrency_list)
            ):
                folder = workdir / f"round{round_index}-{name}-{group_index}"
                try:
                    server = servers.start(name, settings, repository, args.model, folder)
                except servers.ServerStartError as exc:
                    # One failed start must not throw away the rest of a long run; it is reported.
                    error = str(exc).splitlines()[0]
                    failures.append(
                        {"round": round_index, "server": name, "settings": settings, "error": error}
                    )
                    log.error("round %d: %s", round_index, error)
                    continue
                starts[name].append(round(server.started_s, 2))
                try:
                    runs += measure_group(args, server, concurrencies, round_index, folder)
                    if (
                        round_index == args.rounds
                        and not args.no_locust
                        and args.locust_users in concurrencies
                    ):
                        duration = 5.0 if args.quick else args.duration_s
                        try:
                            locust.append(
                                harness.locust_point(server, args.model, args.locust_users, duration, workdir)
                            )
                        except (OSError, subprocess.SubprocessError) as exc:
                            locust.append({"server": name, "error": str(exc)})
                        log.info("locust %s: %s", name, locust[-1])
                finally:
                    servers.stop(server)
    return runs, locust, starts, failures


def measure_group(
    args: argparse.Namespace,
    server: servers.RunningServer,
    concurrencies: list[int],
    round_index: int,
    folder: Path,
) -> list[dict[str, Any]]:
    """Every concurrency of one server start, each measured by every driver in turn."""
    runs = []
    for concurrency in concurrencies:
        for driver in args.driver_list:
            run = {
                "round": round_index,
                **measure(args, driver, server, concurrency, round_index, folder),
                "settings": server.settings,
            }
            runs.append(run)
            log.info(
                "round %d %-10s %-13s c=%-3d %7.1f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %s",
                round_index,
                server.name,
                driver,
                concurrency,
                run["throughput_rps"],
                (run["p50_s"] or float("nan")) * 1e3,
                (run["p99_s"] or float("nan")) * 1e3,
                run.get("error") or run["errors"] or "-",
            )
    return runs


def measure(
    args: argparse.Namespace,
    driver: str,
    server: servers.RunningServer,
    concurrency: int,
    seed: int,
    folder: Path,
) -> dict[str, Any]:
    """One point by one driver: a run record naming its driver."""
    if driver == "perf_analyzer":
        return pa_driver.measure(
            args.perf_analyzer, server, args.model, concurrency, args.duration_s, args.warmup_s, folder
        )
    spec = harness.PointSpec(concurrency, args.duration_s, args.warmup_s)
    return {**harness.measure_point(server, args.model, spec, seed), "driver": "lean"}


def by_driver(runs: list[dict[str, Any]], drivers: list[str]) -> dict[str, dict[str, Any]]:
    """Per driver: its summary, servescope/peer ratios and the issue's targets.

    A point the driver could not measure at all (a run with "error": perf_analyzer cannot drive MLServer,
    which has no ModelConfig RPC) stays in the runs but not in the summary, so its server shows as not
    measured rather than as 0 requests/s.
    """
    out: dict[str, dict[str, Any]] = {}
    for driver in drivers:
        measured = (r for r in runs if r["driver"] == driver and "error" not in r)
        summary = stats.summarize(stats.check_run(r) for r in measured)
        ratio_table = stats.ratios(summary)
        out[driver] = {
            "summary": summary,
            "ratios": ratio_table,
            "targets": stats.check_targets(summary, ratio_table),
        }
    return out


def driver_json(results: dict[str, Any]) -> dict[str, Any]:
    """One driver's summary, ratios and targets in their JSON form."""
    return {
        "summary": stats.summary_to_json(results["summary"]),
        "ratios": stats.ratios_to_json(results["ratios"]),
        "targets": [{"name": v.name, "met": v.met, "detail": v.detail} for v in results["targets"]],
    }


def print_report(
    per_driver: dict[str, dict[str, Any]],
    locust: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    failures: list[dict[str, Any]],
) -> None:
    """The tables and targets per driver, the Locust second opinion, and what could not be measured."""
    for driver, d in per_driver.items():
        print(f"\ndriver {driver}")
        print(stats.format_table(d["summary"], d["ratios"]))
        print()
        for v in d["targets"]:
            print(f"{'MET   ' if v.met else 'MISSED'} [{driver}] {v.name}: {v.detail}")
    for record in locust:
        if "error" in record:
            print(f"locust {record['server']}: {record['error']}")
        elif record["p50_s"] is None:
            print(f"locust {record['server']} {record['users']} users: nothing completed, {record['errors']}")
        else:
            print(
                f"locust {record['server']} {record['users']} users: {record['throughput_rps']:.0f} req/s, "
                f"p50 {record['p50_s'] * 1e3:.2f} ms, p99 {record['p99_s'] * 1e3:.2f} ms"
            )
    for run in runs:
        if "error" in run:
            print(f"NOT MEASURED {run['server']} c={run['concurrency']} by {run['driver']}: {run['error']}")
    for failure in failures:
        print(f"FAILED round {failure['round']} {failure['server']}: {failure['error']}")


def choose_all_settings(args: argparse.Namespace, repository: Path, workdir: Path) -> tuple[dict, dict]:
    """Per server: the settings for one client (lowest p50 at concurrency 1 in the sweep) and for load
    (most throughput at concurrency 32), so every server is measured at its best at each point; the
    sweep uses the lean client whatever the drivers."""
    chosen: dict[str, dict[str, Any]] = {}
    sweeps: dict[str, list[dict[str, Any]]] = {}
    for name in args.server_list:
        if args.no_sweep:
            default = servers.default_settings(name)
            chosen[name] = {"single_client": default, "load": default}
        else:
            chosen[name], sweeps[name] = harness.sweep(
                name, repository, args.model, workdir, args.sweep_point_s, min(args.warmup_s, 1.0)
            )
        log.info("%s settings: %s", name, chosen[name])
    return chosen, sweeps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the server that is running.
    signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    args.perf_analyzer = pa_driver.located() if "perf_analyzer" in args.driver_list else None
    repository = resolve_repository(args)
    for peer in args.server_list:
        if peer in venvs.PEERS:
            venvs.ensure(peer)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servescope-peers-"))
    log.info("repository %s, workdir %s", repository, workdir)

    chosen, sweeps = choose_all_settings(args, repository, workdir)

    runs, locust, starts, failures = run_rounds(args, repository, chosen, workdir)
    per_driver = by_driver(runs, args.driver_list)
    metadata_file = repository / args.model / "metadata.json"
    results = {
        "schema": stats.RESULTS_SCHEMA,
        "started_at": started_at,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - t0, 1),
        "command": "python benchmarks/peers/run.py "
        + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "machine": harness.machine_facts(),
        "model": {
            "name": args.model,
            "repository": str(repository),
            "metadata": _read_json(metadata_file),
        },
        "plan": {
            "servers": args.server_list,
            "concurrency": args.concurrency_list,
            "rounds": args.rounds,
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "drivers": args.driver_list,
            "client": {
                "lean": "benchmarks/lean_client.py, closed loop, batch-1 requests, same process for all",
                "perf_analyzer": pa_driver.MODE,
            },
            "sweep_point_s": None if args.no_sweep else args.sweep_point_s,
            "sweep_rule": " ".join((stats.choose_settings.__doc__ or "").split())
            + " Concurrency 1 runs with the entry of lowest p50 at concurrency 1 (stats.best_c1_entry).",
        },
        "versions": _versions(args.server_list),
        "settings": chosen,
        "sweep": sweeps,
        "start_s": starts,
        "runs": runs,
        # The top-level summary, ratios and targets are the first driver's (lean unless only
        # perf_analyzer ran); by_driver holds each driver's own.
        **driver_json(per_driver[args.driver_list[0]]),
        "by_driver": {driver: driver_json(d) for driver, d in per_driver.items()},
        "locust": locust,
        "failures": failures,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    json_path = args.output / "latest.json"
    json_path.write_text(harness.dumps(results))
    title = (
        f"{args.model}, batch-1 requests, {results['machine']['cpu_count']} CPU cores, client on the same "
        f"machine; median and min-max of {args.rounds} round(s) x {args.duration_s:g} s"
    )
    chart.plot(per_driver[args.driver_list[0]]["summary"], args.output / "latest.png", title)
    markdown = [
        f"### driver {d}\n\n" + stats.format_markdown(r["summary"], r["ratios"])
        for d, r in per_driver.items()
    ]
    (args.output / "latest.md").write_text("\n\n".join(markdown) + "\n")
    print_report(per_driver, locust, runs, failures)
    print(f"\nwrote {json_path}, latest.png and latest.md in {results['wall_s']:.0f} s")
    return 0


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _versions(server_list: list[str]) -> dict[str, dict[str, str]]:
    from importlib import metadata

    out: dict[str, dict[str, str]] = {}
    if any(name.startswith("servescope") for name in server_list):
        out["servescope"] = {n: metadata.version(n) for n in ("servescope", "onnxruntime-gpu", "grpcio")}
    if "triton" in server_list:
        out["triton"] = venvs.package_versions("triton", ["nvidia-pytriton", "onnxruntime", "tritonclient"])
    if "mlserver" in server_list:
        out["mlserver"] = venvs.package_versions("mlserver", ["mlserver", "onnxruntime", "uvloop", "grpcio"])
    return out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
