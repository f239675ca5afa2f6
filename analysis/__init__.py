"""Bottleneck analysis of a servescope campaign: where the time goes, what limits throughput, what to change.

Python API (for the demo and for notebooks):

    from analysis import analyze_campaign, format_verdict
    summary = analyze_campaign(Path("runs/demo"), Path("runs/demo/analysis"))
    print(format_verdict(summary))

This package never imports Locust or loadtest/ (Locust monkey-patches the process with gevent).
"""

from __future__ import annotations

from analysis.pipeline import Summary, analyze, analyze_campaign, format_verdict

__all__ = ["Summary", "analyze", "analyze_campaign", "format_verdict"]
