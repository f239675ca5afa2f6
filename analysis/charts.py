"""The report's charts as inline SVG strings (matplotlib, Agg/SVG backends, no pyplot global state).

Text stays text (svg.fonttype "none"), so the SVG needs no embedded glyphs and no external font; the XML
prologue and metadata block are stripped so the SVG can sit inside HTML and name no external URL.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from analysis.summary import Summary

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
PARTS = (
    ("queueing_s", "queueing", "#d62728"),
    ("batching_delay_s", "batch window", "#ff7f0e"),
    ("compute_s", "compute", "#1f77b4"),
    ("rest_s", "rest (network, serialization, client)", "#7f7f7f"),
)


def _figure(width: float = 7.5, height: float = 4.0) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _svg(fig: Figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "servescope"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    return text


def throughput_latency(summary: Summary) -> str:
    fig, ax = _figure(7.5, 4.0 + 0.17 * len(summary.curves))
    objective = summary.objective
    for color, curve in zip(_cycle(), summary.curves, strict=False):
        xs = [p.inferences_per_s for p in curve.points]
        ys = [p.latency_s * 1e3 for p in curve.points]
        ax.plot(xs, ys, marker="o", color=color, label=curve.series)
        for point in curve.points:
            if not point.trusted:
                ax.plot(point.inferences_per_s, point.latency_s * 1e3, "x", color="black", markersize=9)
            ax.annotate(
                f"{point.offered_load:g}",
                (point.inferences_per_s, point.latency_s * 1e3),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        if curve.knee_step_index is not None:
            knee = next(p for p in curve.points if p.step_index == curve.knee_step_index)
            ax.plot(
                knee.inferences_per_s, knee.latency_s * 1e3, "D", color=color, markersize=9, fillstyle="none"
            )
    ax.axhline(
        objective.latency_s * 1e3,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"objective {objective.label}",
    )
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel(f"{objective.percentile} latency (ms)")
    ax.set_yscale("log")
    _plain_log_labels(ax)
    ax.set_title("Throughput vs latency (labels: offered load; diamond: knee; x: flagged step)", fontsize=9)
    fig.legend(fontsize=7, loc="outside lower center")
    ax.grid(True, alpha=0.3)
    return _svg(fig)


def decomposition(summary: Summary) -> str:
    rows = [r for r in summary.steps if r.decomposition.available]
    fig, ax = _figure(7.5, max(2.5, 0.28 * len(rows) + 1.2))
    if not rows:
        ax.text(0.5, 0.5, "no step has server metrics", ha="center", va="center")
        ax.set_axis_off()
        return _svg(fig)
    labels = [f"#{r.step_index} {r.model} {r.load}" for r in rows]
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for attribute, name, color in PARTS:
        values = np.array([(getattr(r.decomposition, attribute) or 0.0) * 1e3 for r in rows])
        ax.barh(y, values, left=left, color=color, label=name)
        left += values
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("mean client latency (ms)")
    ax.set_title("Where the mean latency goes, per step", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    return _svg(fig)


def batch_size(summary: Summary) -> str:
    fig, ax = _figure(7.5, 4.0 + 0.17 * len(summary.curves))
    by_series: dict[str, list] = defaultdict(list)
    for row in summary.steps:
        if row.batch_size_mean is not None:
            by_series[row.series].append(row)
    for color, (label, rows) in zip(_cycle(), by_series.items(), strict=False):
        rows.sort(key=lambda r: r.offered_load)
        ax.plot(
            [r.offered_load for r in rows],
            [r.batch_size_mean for r in rows],
            marker="o",
            color=color,
            label=label,
        )
    if not by_series:
        ax.text(
            0.5, 0.5, "no step has server batch metrics", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_xlabel("offered load (users, or req/s for open loop)")
    ax.set_ylabel("mean batch size (samples)")
    ax.set_title("Achieved batch size vs concurrency", fontsize=9)
    if by_series:
        fig.legend(fontsize=7, loc="outside lower center")
    ax.grid(True, alpha=0.3)
    return _svg(fig)


def compute_fit(summary: Summary) -> str:
    fig, ax = _figure()
    fits = summary.batching.fits
    if not fits:
        ax.text(
            0.5,
            0.5,
            "no compute fit (batch sizes did not vary)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return _svg(fig)
    for color, (model, fit) in zip(_cycle(), sorted(fits.items()), strict=False):
        sizes = [p[1] for p in fit.points]
        times = [p[2] * 1e3 for p in fit.points]
        ax.scatter(sizes, times, color=color)
        grid = np.linspace(0, max(sizes) * 1.2, 50)
        ax.plot(
            grid,
            [fit.compute_s(b) * 1e3 for b in grid],
            color=color,
            label=f"{model}: {fit.fixed_s * 1e3:.3f} ms + {fit.per_sample_s * 1e3:.4f} ms x batch",
        )
        if fit.stop_paying_batch is not None and fit.stop_paying_batch <= max(sizes) * 1.2:
            ax.axvline(fit.stop_paying_batch, color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("mean batch size (samples)")
    ax.set_ylabel("compute time per batch (ms)")
    ax.set_title("Compute time vs batch size, least-squares fit (dotted: batching stops paying)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return _svg(fig)


def utilization(summary: Summary) -> str:
    fig, ax = _figure()
    rows = sorted(summary.steps, key=lambda r: r.inferences_per_s)
    by_model: dict[str, list] = defaultdict(list)
    for row in rows:
        by_model[row.model].append(row)
    has_gpu = any(r.gpu_utilization is not None for r in rows)
    twin = ax.twinx() if has_gpu else None
    for color, (model, group) in zip(_cycle(), by_model.items(), strict=False):
        xs = [r.inferences_per_s for r in group]
        server = [r.server_cores for r in group]
        generator = [r.generator_cores for r in group]
        if any(v is not None for v in server):
            ax.plot(
                xs,
                [np.nan if v is None else v for v in server],
                marker="o",
                color=color,
                label=f"{model} server CPU",
            )
        if any(v is not None for v in generator):
            ax.plot(
                xs,
                [np.nan if v is None else v for v in generator],
                marker="s",
                linestyle="--",
                color=color,
                label=f"{model} generator CPU",
            )
        if twin is not None:
            gpu = [np.nan if r.gpu_utilization is None else r.gpu_utilization * 100 for r in group]
            twin.plot(xs, gpu, marker="^", linestyle=":", color=color, label=f"{model} GPU")
    cores = summary.machine.get("cpu_count")
    if cores:
        ax.axhline(cores, color="black", linestyle="--", linewidth=1, label=f"{cores} cores")
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel("CPU (cores)")
    if twin is not None:
        twin.set_ylabel("GPU utilization (%)")
        twin.set_ylim(0, 105)
        twin.legend(fontsize=7, loc="lower right")
    ax.set_title("Utilization vs throughput", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, alpha=0.3)
    return _svg(fig)


def all_charts(summary: Summary) -> dict[str, str]:
    """Every chart, by section name; an empty dict when there is nothing to draw."""
    if not summary.steps:
        return {}
    return {
        "Throughput vs latency": throughput_latency(summary),
        "Latency decomposition": decomposition(summary),
        "Batch size vs concurrency": batch_size(summary),
        "Compute time vs batch size": compute_fit(summary),
        "Utilization vs throughput": utilization(summary),
    }


def _plain_log_labels(ax: Axes) -> None:
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(formatter)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def _cycle():
    while True:
        yield from COLORS
