"""One stacked horizontal bar as hand-written inline SVG: where a series' mean latency goes.

Hand-written rather than matplotlib: a bar and its legend are a few rectangles and labels, and the SVG
stays small, has no fonts or ids to clash when several sit on one page, and scales with the page.
"""

from __future__ import annotations

from html import escape

from analysis.overview import SeriesOverview

WIDTH = 1000  # viewBox units; the SVG scales to the page width
BAR_HEIGHT = 26
LEGEND_ROW = 20
CHAR_WIDTH = 7.2  # a generous estimate of one character at font-size 13, to decide what fits
FONT = 'font-family="system-ui, sans-serif" font-size="13"'


def bar_svg(row: SeriesOverview) -> str:
    """The bar (share labels inside the segments wide enough for them) and a legend with ms and share;
    nothing when there is no latency to split (the line above the bar says why)."""
    if not row.segments:
        return ""
    shapes: list[str] = []
    x = 0.0
    for segment in row.segments:
        width = segment.share * WIDTH
        colour = segment.part.colour
        tip = f"{segment.part.label}: {segment.seconds * 1e3:.2f} ms, {segment.percent_text}"
        shapes.append(
            f'<rect x="{x:.2f}" y="0" width="{width:.2f}" height="{BAR_HEIGHT}" fill="{colour}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        label = f"{segment.part.short} {segment.percent_text}"
        if len(label) * CHAR_WIDTH + 8 > width:
            label = segment.percent_text
        if len(label) * CHAR_WIDTH + 6 <= width:
            shapes.append(
                f'<text x="{x + width / 2:.2f}" y="{BAR_HEIGHT / 2 + 4.5:.1f}" text-anchor="middle" '
                f'fill="{_ink(colour)}" {FONT}>{escape(label)}</text>'
            )
        x += width
    legend, height = _legend(row)
    described = f"{row.series}: mean {row.mean_s * 1e3:.2f} ms at step {row.step_index}: {row.bar_text_ms}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bar" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="img"><title>{escape(described)}</title>' + "".join(shapes) + legend + "</svg>"
    )


def _legend(row: SeriesOverview) -> tuple[str, int]:
    """Every segment with its ms and share, in rows that wrap at the bar's width."""
    items: list[str] = []
    x, y = 0.0, BAR_HEIGHT + 19
    for segment in row.segments:
        text = f"{segment.part.label} {segment.seconds * 1e3:.2f} ms ({segment.percent_text})"
        width = 18 + len(text) * CHAR_WIDTH + 18
        if x > 0 and x + width > WIDTH:
            x, y = 0.0, y + LEGEND_ROW
        items.append(
            f'<rect x="{x:.1f}" y="{y - 11}" width="12" height="12" fill="{segment.part.colour}"/>'
            f'<text x="{x + 18:.1f}" y="{y}" fill="#222" {FONT}>{escape(text)}</text>'
        )
        x += width
    return "".join(items), y + 5


def _ink(colour: str) -> str:
    """Black text on light fills, white on dark ones (relative luminance of the #rrggbb fill)."""
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return "#000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "#fff"
