"""Thresholds live once (analysis/thresholds.py) and docs/analysis.md lists exactly them."""

from __future__ import annotations

from pathlib import Path

from analysis import thresholds

DOCS = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"


def test_every_threshold_has_a_meaning() -> None:
    defined = {
        name
        for name in vars(thresholds)
        if name.isupper() and name not in ("MEANINGS", "GENERATOR_SATURATED_PERCENT")
    }
    assert defined == set(thresholds.MEANINGS)


def test_docs_list_the_thresholds_of_the_code() -> None:
    text = DOCS.read_text()
    listed = text.split("<!-- thresholds:begin -->\n", 1)[1].split("\n<!-- thresholds:end -->", 1)[0]
    assert listed.strip() == thresholds.markdown(), "docs/analysis.md is stale: python -m analysis.thresholds"
