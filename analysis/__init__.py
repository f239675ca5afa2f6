"""Bottleneck analysis of a servescope campaign: where the time goes, what limits throughput, what to change.

Python API (for the demo and for notebooks):

    from analysis import analyze_campaign, format_verdict
    summary = analyze_campaign(Path("runs/demo"), Path("runs/demo/analysis"))
    print(format_verdict(summary))

This package never imports Locust or loadtest/ (Locust monkey-patches the process with gevent). Its names
are loaded on first use, so `import analysis.cli` (the command line) stays free of numpy and matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.pipeline import Summary, analyze, analyze_campaign, format_verdict

__all__ = ["Summary", "analyze", "analyze_campaign", "format_verdict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from analysis import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
