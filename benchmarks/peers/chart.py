"""The comparison chart: throughput and latency against concurrency, medians with min-max bars."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from stats import REFERENCE, Spread

COLORS = {"servescope": "#1f77b4", "servescope-1w": "#9ecae1", "triton": "#2ca02c", "mlserver": "#d62728"}


def plot(summary: Mapping[str, Mapping[int, Mapping[str, Spread]]], path: Path, title: str) -> None:
    """Write a two-panel PNG: requests/s (left), p50 and p99 in ms on a log scale (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    order = (
        [REFERENCE, *sorted(s for s in summary if s != REFERENCE)]
        if REFERENCE in summary
        else sorted(summary)
    )
    for server in order:
        by_c = summary[server]
        xs = sorted(by_c)
        color = COLORS.get(server)
        _line(left, xs, [by_c[c]["throughput_rps"] for c in xs], 1.0, server, color, "-")
        _line(right, xs, [by_c[c]["p99_s"] for c in xs], 1e3, f"{server} p99", color, "-")
        _line(right, xs, [by_c[c]["p50_s"] for c in xs], 1e3, f"{server} p50", color, ":")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients (batch-1 requests)")
        axis.grid(True, which="both", alpha=0.3)
        ticks = sorted({c for by_c in summary.values() for c in by_c})
        axis.set_xticks(ticks, [str(t) for t in ticks])
    left.set_ylabel("throughput, requests/s")
    left.set_ylim(bottom=0)
    right.set_ylabel("client latency, ms")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.legend(fontsize=8)
    right.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _line(
    axis, xs: list[int], spreads: list[Spread], scale: float, label: str, color: str | None, style: str
):
    med = [s.median * scale for s in spreads]
    low = [(s.median - s.min) * scale for s in spreads]
    high = [(s.max - s.median) * scale for s in spreads]
    axis.errorbar(xs, med, yerr=[low, high], label=label, color=color, linestyle=style, marker="o", capsize=3)
