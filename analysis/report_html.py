"""report.html: one self-contained page (inline CSS, inline SVG, no external URL), verdict first."""

from __future__ import annotations

from pathlib import Path

from analysis.fmt import ms_cell, num_cell, pct_cell
from analysis.reader import Campaign
from analysis.report_md import TEXT_COLUMNS, step_table
from analysis.summary import Summary

TEMPLATE = "report.html.j2"


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
    env.filters.update(ms=ms_cell, num=num_cell, pct=pct_cell)
    header, rows = step_table(summary)
    flagged = {row.step_index for row in summary.steps if row.flags}
    return env.get_template(TEMPLATE).render(
        s=summary,
        charts=all_charts(summary),
        step_header=header,
        step_rows=rows,
        text_columns=TEXT_COLUMNS,
        flagged=flagged,
    )
