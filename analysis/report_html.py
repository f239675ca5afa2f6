"""report.html: one self-contained page (inline CSS, inline SVG, no external URL): the first screen
(analysis/overview.py: a table of series and a latency bar each), then the verdicts and the details."""

from __future__ import annotations

import re
from pathlib import Path

from analysis.fmt import ms_cell, num_cell, pct_cell
from analysis.overview import build_overview
from analysis.overview_svg import bar_svg
from analysis.reader import Campaign
from analysis.report_md import TEXT_COLUMNS, step_table
from analysis.summary import Summary

TEMPLATE = "report.html.j2"


# Flags with their value ("--max-batch-size 8") and changes ("794 -> 2280") in a table cell: broken
# across lines they read as something else, and the flags are meant to be copied.
_UNBREAKABLE = re.compile(r"--[a-z][a-z0-9-]*(?: [0-9][^\s;)]*)?|[^\s(;]+ -&gt; [^\s;)]+")


def keep_together(text: str) -> str:
    """text, escaped, with its flags and arrows in spans that do not wrap (a jinja2 filter)."""
    import markupsafe

    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(_UNBREAKABLE.sub(lambda m: f'<span class="nowrap">{m.group(0)}</span>', escaped))


def render_html(summary: Summary, campaign: Campaign | None = None) -> str:
    import jinja2

    from analysis.charts import all_charts

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=ms_cell, num=num_cell, pct=pct_cell, keep_together=keep_together)
    header, rows = step_table(summary)
    flagged = {row.step_index for row in summary.steps if row.flags}
    return env.get_template(TEMPLATE).render(
        s=summary,
        overview=[(row, bar_svg(row)) for row in build_overview(summary)],
        charts=all_charts(summary),
        step_header=header,
        step_rows=rows,
        text_columns=TEXT_COLUMNS,
        flagged=flagged,
    )
