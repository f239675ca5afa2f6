"""Verdict kinds are data: every kind has a title and a colour family the report styles, and the rules
are tried in a fixed order ending with the one that always finds something."""

from __future__ import annotations

import re
from pathlib import Path

from analysis import rules

TEMPLATE = Path(__file__).resolve().parents[2] / "analysis" / "templates" / "report.html.j2"


def test_every_kind_has_a_styled_family_and_a_title() -> None:
    families = set(re.findall(r"\.verdict\.(\w+) \{", TEMPLATE.read_text()))
    assert families == {"ok", "limit", "config", "client", "unknown"}
    for key, kind in rules.KINDS.items():
        assert kind.key == key and kind.css_class in families, key
        assert kind.title
        assert kind.advice, f"{key} gives no recommendation"


def test_rules_end_with_the_fallback() -> None:
    assert rules.RULES[-1] is rules.largest_component
    assert len(set(rules.RULES)) == len(rules.RULES)
