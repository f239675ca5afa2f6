"""A comparison (compare.py) as a terminal table, Markdown for a pull request, and one self-contained
HTML page with each matched series' throughput-vs-latency curves overlaid."""

from __future__ import annotations

import html

from analysis.compare import Comparison, SeriesComparison
from analysis.fmt import ms_cell, num_cell


def _change(value: float, significant: bool) -> str:
    text = f"{value:+.0%}"
    return text if significant else f"{text} (noise)"


def rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    header = [
        "series", "load", "req/s base", "req/s cand", "change", "p50 ms base", "p50 ms cand", "p99 ms base",
        "p99 ms cand", "p99 change",
    ]  # fmt: skip
    out = []
    for item in comparison.series:
        for point in item.points:
            out.append([
                item.candidate, point.load, num_cell(point.throughput_rps[0], ".0f"),
                num_cell(point.throughput_rps[1], ".0f"),
                _change(point.throughput_change, point.throughput_significant),
                ms_cell(point.p50_s[0]), ms_cell(point.p50_s[1]),
                ms_cell(point.p99_s[0]), ms_cell(point.p99_s[1]),
                _change(point.p99_change, point.p99_significant),
            ])  # fmt: skip
    return header, out


def _series_line(item: SeriesComparison) -> str:
    base, cand = item.best_inferences_per_s
    best = (
        f"best within the objective {num_cell(base, '.0f') or 'none'} -> {num_cell(cand, '.0f') or 'none'} "
        "inferences/s"
    )
    knee = f"knee step {item.knee_step[0]} -> {item.knee_step[1]}"
    verdict = f"verdict {item.verdict[0]} -> {item.verdict[1]}"
    matched = "" if item.matched_by == "label" else f" (was: {item.baseline})"
    return f"{item.candidate}{matched}: {best}; {knee}; {verdict}"


def format_table(comparison: Comparison) -> str:
    header, table = rows(comparison)
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    lines = [f"Compare {comparison.baseline} -> {comparison.candidate} (objective {comparison.objective})"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.extend("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in table)
    lines.extend(f"- {_series_line(item)}" for item in comparison.series)
    lines.extend(f"unmatched in the baseline: {label}" for label in comparison.unmatched_baseline)
    lines.extend(f"unmatched in the candidate: {label}" for label in comparison.unmatched_candidate)
    return "\n".join(lines)


def render_markdown(comparison: Comparison) -> str:
    header, table = rows(comparison)
    out = [f"# servescope compare: `{comparison.baseline}` -> `{comparison.candidate}`", ""]
    out.append(f"Objective: **{comparison.objective}**. A change marked (noise) is within the two steps' "
               "window spread.")  # fmt: skip
    out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table]
    out += ["", *(f"- {_series_line(item)}" for item in comparison.series)]
    if comparison.unmatched_baseline or comparison.unmatched_candidate:
        out += ["", "Unmatched series:", ""]
        out += [f"- baseline only: {label}" for label in comparison.unmatched_baseline]
        out += [f"- candidate only: {label}" for label in comparison.unmatched_candidate]
    return "\n".join(out) + "\n"


def _curves_svg(item: SeriesComparison) -> str:
    from analysis.charts import _figure, _svg

    fig, ax = _figure(7.0, 3.6)
    for index, (name, color) in enumerate((("baseline", "#7f7f7f"), ("candidate", "#1f77b4"))):
        xs = [p.throughput_rps[index] for p in item.points]
        ys = [p.p99_s[index] * 1e3 for p in item.points]
        ax.plot(xs, ys, marker="o", color=color, label=name)
        for point, x, y in zip(item.points, xs, ys, strict=True):
            ax.annotate(point.load, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(item.candidate, fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return _svg(fig)


def render_html(comparison: Comparison) -> str:
    header, table = rows(comparison)
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>servescope compare: {esc(comparison.candidate)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;"
        "color:#222}"
        "table{border-collapse:collapse;font-size:.8em}th,td{border:1px solid #ccc;padding:.2em .4em;"
        "text-align:right}td:first-child{text-align:left}.chart svg{max-width:100%;height:auto}</style>",
        "</head><body>",
        f"<h1>servescope compare</h1><p>{esc(comparison.baseline)} &rarr; {esc(comparison.candidate)}; "
        "objective "
        f"<b>{esc(comparison.objective)}</b>. A change marked (noise) is within the steps' window "
        "spread.</p>",
        "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>",
        *("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table),
        "</table><ul>",
        *(f"<li>{esc(_series_line(item))}</li>" for item in comparison.series),
        "</ul>",
    ]  # fmt: skip
    for item in comparison.series:
        if item.points:
            parts.append(f'<div class="chart">{_curves_svg(item)}</div>')
    if comparison.unmatched_baseline or comparison.unmatched_candidate:
        parts.append("<h2>Unmatched series</h2><ul>")
        parts += [f"<li>baseline only: {esc(label)}</li>" for label in comparison.unmatched_baseline]
        parts += [f"<li>candidate only: {esc(label)}</li>" for label in comparison.unmatched_candidate]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
