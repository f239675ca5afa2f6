"""Numbers as the reports write them: in sentences (`ms`, `pct`: with a unit, "n/a" when unknown) and
in table cells (`ms_cell`, `pct_cell`, `num_cell`: no unit, empty when unknown). The terminal, Markdown
and HTML reports all use these."""

from __future__ import annotations


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f} ms"


def pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.0%}"


def ms_cell(seconds: float | None, digits: int = 2) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.{digits}f}"


def num_cell(value: float | None, fmt: str = ".1f") -> str:
    return "" if value is None else format(value, fmt)


def pct_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"
