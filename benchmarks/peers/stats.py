"""Summaries, ratios and target checks of the peer benchmark, plus reading and checking its JSON.

Pure functions over plain dicts (no numpy, no servers), so tests/peers/ can check them without the
peer virtual environments. A *run* is one measured point:
``{"round": 1, "server": "triton", "driver": "lean", "concurrency": 32, "completed": 9000, "errors": {},
"duration_s": 10.0, "throughput_rps": 900.0, "p50_s": 0.03, "p99_s": 0.05}``; `driver` names the load
client that measured it (`lean` or `perf_analyzer`), and summaries are taken over one driver's runs.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_SCHEMA = "servescope-peers/2"
# Version 1 files predate the driver field: every run in them was measured by the lean client.
OLDER_SCHEMAS = {"servescope-peers/1": {"driver": "lean"}}
REFERENCE = "servescope"
METRICS = ("throughput_rps", "p50_s", "p99_s")
RUN_FIELDS = {
    "round": int,
    "server": str,
    "driver": str,
    "concurrency": int,
    "completed": int,
    "errors": dict,
    "duration_s": float,
    "throughput_rps": float,
    "p50_s": float,
    "p99_s": float,
}


class PeerResultsError(ValueError):
    """A results file or run record is malformed."""


@dataclass(frozen=True)
class Spread:
    """Median with the smallest and largest value of the repeated rounds."""

    median: float
    min: float
    max: float
    count: int


@dataclass(frozen=True)
class Verdict:
    """One target of the issue: met or not, and by how much."""

    name: str
    met: bool
    detail: str


def spread(values: Iterable[float]) -> Spread:
    """Median, min and max of the finite values; NaN fields when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Spread(math.nan, math.nan, math.nan, 0)
    return Spread(statistics.median(finite), min(finite), max(finite), len(finite))


def check_run(run: Mapping[str, Any], where: str = "run") -> dict[str, Any]:
    """Return a copy of one run record with its types checked; raise PeerResultsError otherwise."""
    if not isinstance(run, Mapping):
        raise PeerResultsError(f"{where}: expected an object, found {type(run).__name__}")
    missing = [name for name in RUN_FIELDS if name not in run]
    if missing:
        raise PeerResultsError(f"{where}: missing field(s) {missing}")
    checked: dict[str, Any] = dict(run)
    for name, kind in RUN_FIELDS.items():
        value = run[name]
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            checked[name] = float(value)
        elif kind is float and value is None and name in ("p50_s", "p99_s"):
            checked[name] = math.nan  # nothing completed: no percentile
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise PeerResultsError(f"{where}: field {name!r} should be {kind.__name__}, found {value!r}")
    if checked["concurrency"] < 1:
        raise PeerResultsError(f"{where}: concurrency must be >= 1, found {checked['concurrency']}")
    return checked


def summarize(runs: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, dict[str, Spread]]]:
    """Group runs by server and concurrency; Spread of throughput, p50 and p99 over the rounds.

    A run with errors still counts: its throughput counts only answered requests, so errors show as a
    lower figure rather than vanishing from the median.
    """
    grouped: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for run in runs:
        grouped.setdefault(run["server"], {}).setdefault(int(run["concurrency"]), []).append(run)
    return {
        server: {
            concurrency: {metric: spread(r[metric] for r in points) for metric in METRICS}
            for concurrency, points in sorted(by_concurrency.items())
        }
        for server, by_concurrency in grouped.items()
    }


def _ratio(numerator: float, denominator: float) -> float:
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return math.nan
    return numerator / denominator


def ratios(
    summary: Mapping[str, Mapping[int, Mapping[str, Spread]]], reference: str = REFERENCE
) -> dict[str, dict[int, dict[str, float]]]:
    """reference/peer ratios of the medians, per peer and concurrency.

    Throughput ratio above 1 and latency ratios below 1 mean the reference (servescope) is better.
    Only concurrencies measured on both sides appear.
    """
    if reference not in summary:
        return {}
    ours = summary[reference]
    result: dict[str, dict[int, dict[str, float]]] = {}
    for peer, by_concurrency in summary.items():
        if peer == reference:
            continue
        result[peer] = {
            concurrency: {
                "throughput": _ratio(ours[concurrency]["throughput_rps"].median, m["throughput_rps"].median),
                "p50": _ratio(ours[concurrency]["p50_s"].median, m["p50_s"].median),
                "p99": _ratio(ours[concurrency]["p99_s"].median, m["p99_s"].median),
            }
            for concurrency, m in sorted(by_concurrency.items())
            if concurrency in ours
        }
    return result


def check_targets(
    summary: Mapping[str, Mapping[int, Mapping[str, Spread]]],
    ratio_table: Mapping[str, Mapping[int, Mapping[str, float]]],
    reference: str = REFERENCE,
) -> list[Verdict]:
    """The issue's targets: at concurrency 32 and 64 throughput >= 1.5x Triton with p99 no higher; at
    concurrency 1 a p50 at most half of each peer's (servescope's own 1-worker line is not a peer). A
    target that could not be measured is not met."""
    verdicts: list[Verdict] = []
    for concurrency in (32, 64):
        triton = ratio_table.get("triton", {}).get(concurrency)
        name = f"c{concurrency} throughput >= 1.5x Triton"
        if triton is None:
            verdicts.append(Verdict(name, False, "not measured"))
            verdicts.append(Verdict(f"c{concurrency} p99 <= Triton", False, "not measured"))
            continue
        t, p = triton["throughput"], triton["p99"]
        verdicts.append(Verdict(name, t >= 1.5, f"{t:.2f}x (target 1.50x)"))
        verdicts.append(
            Verdict(f"c{concurrency} p99 <= Triton", p <= 1.0, f"p99 ratio {p:.2f} (target <= 1.00)")
        )
    ours1 = summary.get(reference, {}).get(1)
    for peer in sorted(p for p in summary if not p.startswith(reference)):
        theirs1 = summary[peer].get(1)
        name = f"c1 p50 <= 0.5x {peer}"
        if ours1 is None or theirs1 is None:
            verdicts.append(Verdict(name, False, "not measured"))
            continue
        a, b = ours1["p50_s"].median, theirs1["p50_s"].median
        verdicts.append(Verdict(name, a <= 0.5 * b, f"{a * 1e3:.2f} ms vs {b * 1e3:.2f} ms ({a / b:.2f}x)"))
    return verdicts


def choose_settings(candidates: list[dict[str, Any]]) -> int:
    """Index of the best sweep entry: among the entries within 5% of the highest throughput at
    concurrency 32 (the issue's headline point), the one with the lowest p99 there: each server runs
    with the settings that serve it best under load. Concurrency 1 uses best_c1_entry instead."""
    usable = [i for i, c in enumerate(candidates) if c.get("c32_throughput_rps") and c.get("c32_p99_s")]
    if not usable:
        return 0
    best = max(candidates[i]["c32_throughput_rps"] for i in usable)
    close = [i for i in usable if candidates[i]["c32_throughput_rps"] >= 0.95 * best]
    return min(close, key=lambda i: candidates[i]["c32_p99_s"])


def best_c1_entry(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The sweep entry with the lowest p50 at concurrency 1 (None when none was measured)."""
    usable = [c for c in candidates if c.get("c1_p50_s")]
    return min(usable, key=lambda c: c["c1_p50_s"]) if usable else None


def summary_to_json(summary: Mapping[str, Mapping[int, Mapping[str, Spread]]]) -> dict[str, Any]:
    """JSON form: concurrency keys become strings, NaN becomes null."""
    return {
        server: {
            str(c): {metric: _clean(asdict(s)) for metric, s in metrics.items()}
            for c, metrics in by_concurrency.items()
        }
        for server, by_concurrency in summary.items()
    }


def ratios_to_json(table: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, Any]:
    return {peer: {str(c): _clean(dict(r)) for c, r in by_c.items()} for peer, by_c in table.items()}


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def load_results(path: Path) -> dict[str, Any]:
    """Read a results file and check it: schema tag, run records; recompute summary from the runs."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise PeerResultsError(f"{path}: no such results file") from exc
    except json.JSONDecodeError as exc:
        raise PeerResultsError(f"{path}: not valid JSON ({exc})") from exc
    schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
    if schema != RESULTS_SCHEMA and schema not in OLDER_SCHEMAS:
        raise PeerResultsError(f"{path}: schema {schema!r} is not {RESULTS_SCHEMA!r}")
    runs = data.get("runs")
    if not isinstance(runs, list):
        raise PeerResultsError(f"{path}: field 'runs' should be a list")
    defaults = OLDER_SCHEMAS.get(schema, {})
    runs = [{**defaults, **run} if isinstance(run, dict) else run for run in runs]
    data["runs"] = [check_run(run, f"{path}: runs[{i}]") for i, run in enumerate(runs)]
    return data


def format_table(
    summary: Mapping[str, Mapping[int, Mapping[str, Spread]]],
    ratio_table: Mapping[str, Mapping[int, Mapping[str, float]]],
    reference: str = REFERENCE,
) -> str:
    """A plain-text table: per concurrency and server, median [min-max] of throughput, p50 and p99."""
    order = [reference, *sorted(s for s in summary if s != reference)] if reference in summary else []
    order = order or sorted(summary)
    concurrencies = sorted({c for by_c in summary.values() for c in by_c})
    header = f"{'conc':>4}  {'server':<10} {'req/s median [min-max]':<26} {'p50 ms':<22} {'p99 ms':<22}"
    lines = [header, "-" * len(header)]
    for c in concurrencies:
        for server in order:
            m = summary[server].get(c)
            if m is None:
                continue
            lines.append(
                f"{c:>4}  {server:<10} {_fmt(m['throughput_rps'], 1, 0):<26} "
                f"{_fmt(m['p50_s'], 1e3, 2):<22} {_fmt(m['p99_s'], 1e3, 2):<22}"
            )
        for peer in order[1:]:
            r = ratio_table.get(peer, {}).get(c)
            if r is not None:
                lines.append(
                    f"{'':>4}  {reference}/{peer}: throughput {r['throughput']:.2f}x, "
                    f"p50 {r['p50']:.2f}x, p99 {r['p99']:.2f}x"
                )
    return "\n".join(line.rstrip() for line in lines)


def format_markdown(
    summary: Mapping[str, Mapping[int, Mapping[str, Spread]]],
    ratio_table: Mapping[str, Mapping[int, Mapping[str, float]]],
    reference: str = REFERENCE,
) -> str:
    """The same figures as a Markdown table, one row per concurrency and server, ratios in the peer rows."""
    order = (
        [reference, *sorted(s for s in summary if s != reference)]
        if reference in summary
        else sorted(summary)
    )
    concurrencies = sorted({c for by_c in summary.values() for c in by_c})
    lines = [
        "| concurrency | server | requests/s | p50 ms | p99 ms | servescope/peer: throughput, p50, p99 |",
        "|---:|---|---|---|---|---|",
    ]
    for c in concurrencies:
        for server in order:
            m = summary[server].get(c)
            if m is None:
                continue
            r = ratio_table.get(server, {}).get(c)
            ratio = f"{r['throughput']:.2f}x, {r['p50']:.2f}x, {r['p99']:.2f}x" if r else ""
            lines.append(
                f"| {c} | {server} | {_fmt(m['throughput_rps'], 1, 0)} | {_fmt(m['p50_s'], 1e3, 2)} | "
                f"{_fmt(m['p99_s'], 1e3, 2)} | {ratio} |"
            )
    return "\n".join(lines)


def _fmt(s: Spread, scale: float, digits: int) -> str:
    if s.count == 0:
        return "n/a"
    return f"{s.median * scale:.{digits}f} [{s.min * scale:.{digits}f}-{s.max * scale:.{digits}f}]"
