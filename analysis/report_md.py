"""report.md: the first screen (a table of series, their latency bars in words), the verdict and the tables,
for pasting into a pull request or an issue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analysis.fmt import ms_cell as ms
from analysis.fmt import num_cell as num
from analysis.fmt import pct_cell as pct
from analysis.overview import build_overview
from analysis.summary import StepRow, Summary
from servescope.metrics import ServerDeltas


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows)
    return lines


@dataclass(frozen=True)
class Column:
    """One column of the table of steps: its header and how a row shows in it."""

    header: str
    cell: Callable[[StepRow], str]


def _server(row: StepRow, figure: Callable[[ServerDeltas], float | None], fmt: str = ".2f") -> str:
    """A cell from the server's own figures for the step (empty when it was not scraped)."""
    return num(figure(row.server), fmt) if row.server is not None else ""


# The table of steps in the Markdown and HTML reports. A server figure (servescope.metrics.ServerDeltas)
# shows in both by adding a Column here.
STEP_COLUMNS = (
    Column("step", lambda r: str(r.step_index)),
    Column("model", lambda r: r.model),
    Column("load", lambda r: r.load),
    Column("inf/s", lambda r: num(r.inferences_per_s)),
    Column("req/s", lambda r: num(r.requests_per_s)),
    Column("p50 ms", lambda r: ms(r.p50_s)),
    Column("p99 ms", lambda r: ms(r.p99_s)),
    Column("p99.9 ms", lambda r: ms(r.p999_s)),
    Column("mean ms", lambda r: ms(r.mean_s)),
    Column("errors", lambda r: pct(r.error_ratio)),
    Column("batch", lambda r: _server(r, lambda d: d.batch_size_mean)),
    Column("queue ms", lambda r: ms(r.decomposition.queueing_s)),
    Column("window ms", lambda r: ms(r.decomposition.batching_delay_s)),
    Column("compute ms", lambda r: ms(r.decomposition.compute_s)),
    Column("rest ms", lambda r: ms(r.decomposition.rest_s)),
    Column("server cores", lambda r: num(r.server_cores, ".2f")),
    Column("gen. cores", lambda r: num(r.generator_cores, ".2f")),
    Column("GPU", lambda r: pct(r.gpu_utilization)),
    Column("Little", lambda r: num(r.littles_law_ratio, ".2f")),
    Column("stable", lambda r: "yes" if r.stable else "no"),
    Column("flags", lambda r: ", ".join(r.flags)),
)
TEXT_COLUMNS = ("model", "load", "flags")  # left-aligned in the HTML table


def step_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table of steps, shared by the Markdown and HTML reports."""
    return [c.header for c in STEP_COLUMNS], [[c.cell(row) for c in STEP_COLUMNS] for row in summary.steps]


def _first_screen(summary: Summary) -> list[str]:
    """The table of series and each series' latency bar in words (analysis/overview.py)."""
    overview = build_overview(summary)
    if not overview:
        return []
    out = ["## At a glance", ""]
    header = ["series", "verdict", "based on", f"best within {summary.objective.label}", "top recommendation"]
    rows = [
        [o.series, o.verdict, f"step {o.step_index}, {o.load}", o.best, o.recommendation] for o in overview
    ]
    out.extend(_table(header, rows))
    out.extend(["", "Where the mean latency goes, at the step each verdict is based on:", ""])
    for o in overview:
        note = f" ({o.note})" if o.note else ""
        out.append(f"- {o.series}: mean {ms(o.mean_s)} ms at step {o.step_index}{note}: `{o.bar_text_ms}`")
    out.append("")
    return out


def render_markdown(summary: Summary) -> str:
    sections = (
        _heading,
        _first_screen,
        _verdicts,
        _left_out,
        _throughput,
        _batching,
        _precision,
        _utilization,
        _floor,
        _consistency,
        _steps,
        _notes,
    )
    return "\n".join(line for section in sections for line in section(summary))


def _heading(summary: Summary) -> list[str]:
    machine = summary.machine
    return [
        f"# servescope analysis: {summary.campaign}",
        "",
        f"Objective: **{summary.objective.label}**. Machine: {machine.get('cpu_model')} "
        f"({machine.get('cpu_count')} cores), GPU: {machine.get('gpu_name') or 'none'}. "
        f"Campaign folder: `{summary.campaign_dir}`.",
        "",
    ]


def _verdicts(summary: Summary) -> list[str]:
    out = ["## Verdict", ""]
    if not summary.verdicts:
        out.append("No verdict: no step could be analysed (see the steps left out below).")
    for v in summary.verdicts:
        out.append(f"### {v.series}")
        out.append("")
        out.append(f"**{v.title}** (based on step {', '.join(map(str, v.based_on_steps))})")
        out.append("")
        out.extend(f"- {reason}" for reason in v.reasons)
        if v.recommendations:
            out.append("")
            out.append("Recommendations:")
            out.append("")
            out.extend(f"1. {rec.text}" for rec in v.recommendations)
        if v.flagged_steps:
            out.append("")
            out.append(
                f"Flagged steps in this series: {', '.join(map(str, v.flagged_steps))} (see Consistency)."
            )
        out.append("")
    return out


def _left_out(summary: Summary) -> list[str]:
    if not summary.left_out:
        return []
    rows = [[x.where, x.reason] for x in summary.left_out]
    return ["## Steps left out", "", *_table(["where", "why"], rows), ""]


def _throughput(summary: Summary) -> list[str]:
    rows = []
    for c in summary.curves:
        knee = next((p for p in c.points if p.step_index == c.knee_step_index), None)
        rows.append([
            c.series, str(len(c.points)),
            "none" if knee is None else f"step {knee.step_index}: {knee.inferences_per_s:.0f} inf/s",
            "none" if c.best_step_index is None
            else f"step {c.best_step_index}: {c.best_inferences_per_s:.0f} inf/s",
            "; ".join(c.notes),
        ])  # fmt: skip
    header = ["series", "steps", "knee", f"best within {summary.objective.label}", "notes"]
    return ["## Throughput vs latency", "", *_table(header, rows), ""]


def _batching(summary: Summary) -> list[str]:
    out = ["## Batching", ""]
    fits = summary.batching.fits
    if fits:
        out.extend(
            _table(
                ["model", "device", "fixed ms/batch", "ms/sample", "R²", "stops paying beyond", "points"],
                [
                    [
                        f.model,
                        f.device,
                        ms(f.fixed_s, 3),
                        ms(f.per_sample_s, 4),
                        num(f.r_squared, ".3f"),
                        "" if f.stop_paying_batch is None else f"{f.stop_paying_batch:.0f} samples",
                        str(len(f.points)),
                    ]
                    for f in fits.values()
                ],
            )
        )
    else:
        out.append("No compute fit: the batch sizes did not vary enough.")
    for finding in summary.batching.delay_findings:
        out.append("")
        out.append(
            f"- Batch window at low load ({finding.series}, step {finding.step_index}): "
            f"{ms(finding.batching_delay_s)} ms of {ms(finding.client_mean_s)} ms mean ({finding.share:.0%}) "
            f"for batches of {finding.batch_size_mean:.2f}; "
            f"suggested max_queue_delay_us {finding.suggested_delay_us}."
        )
    out.append("")
    return out


_PRECISION_HEADER = [
    "model",
    "precision",
    "size MB",
    "accuracy",
    "Δ accuracy (points)",
    "best inf/s",
    "x reference",
    "inf/s at load",
    "x reference at load",
    "p50 ms",
    "p99 ms",
]


def _precision(summary: Summary) -> list[str]:
    if not summary.quantization:
        return []
    out = ["## Precision variants", ""]
    for comp in summary.quantization:
        load = "" if comp.common_load is None else f" at load {comp.common_load:g}"
        out.append(f"Configuration: {comp.configuration} (reference {comp.reference_model}){load}")
        out.append("")
        rows = [
            [
                r.model,
                r.precision or "",
                num(r.file_size_bytes / 1e6 if r.file_size_bytes else None, ".2f"),
                num(r.accuracy, ".4f"),
                num(r.accuracy_delta * 100 if r.accuracy_delta is not None else None, "+.2f"),
                num(r.best_inferences_per_s, ".0f"),
                num(r.throughput_ratio, ".2f"),
                num(r.inferences_per_s_at_load, ".0f"),
                num(r.ratio_at_load, ".2f"),
                ms(r.p50_s_at_load),
                ms(r.p99_s_at_load),
            ]
            for r in comp.rows
        ]
        out.extend(_table(_PRECISION_HEADER, rows))
        out.append("")
    return out


def _utilization(summary: Summary) -> list[str]:
    header = [
        "model",
        "steps",
        "r(server CPU, throughput)",
        "r(generator CPU, throughput)",
        "r(GPU, throughput)",
    ]
    rows = [
        [
            c.model,
            str(c.points),
            num(c.server_cpu_r, ".2f"),
            num(c.generator_cpu_r, ".2f"),
            num(c.gpu_r, ".2f"),
        ]
        for c in summary.correlations
    ]
    return ["## Utilization", "", *_table(header, rows), ""]


def _floor(summary: Summary) -> list[str]:
    if not summary.floor:
        return []
    header = ["model", "step", "batch", "floor ms", "bound", "measured ms", "efficiency", "note"]
    rows = [
        [
            f.model,
            str(f.step_index),
            num(f.batch_size_mean, ".2f"),
            ms(f.floor_s, 4),
            f.bound,
            ms(f.measured_s, 3),
            f"{f.efficiency:.2%}",
            f.note or "",
        ]
        for f in summary.floor
    ]
    return ["## Analytic floor", "", *_table(header, rows), ""]


def _consistency(summary: Summary) -> list[str]:
    out = ["## Consistency", ""]
    if summary.flags:
        rows = [[str(f.step_index), f.check, f.message] for f in summary.flags]
        out.extend(_table(["step", "check", "detail"], rows))
    else:
        out.append("Every step passed the checks (Little's law, error rate, stability, generator CPU).")
    out.append("")
    return out


def _steps(summary: Summary) -> list[str]:
    header, rows = step_table(summary)
    return ["## Steps", "", *_table(header, rows), ""]


def _notes(summary: Summary) -> list[str]:
    if not summary.notes:
        return []
    return ["## Notes", "", *(f"- {note}" for note in summary.notes), ""]
