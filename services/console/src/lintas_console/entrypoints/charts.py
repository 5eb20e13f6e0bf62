"""Bar charts drawn on the server as inline SVG: readable without JavaScript, no library.

`bar_chart` computes the geometry (a small dataclass, easy to test); `svg` writes it out.
Each bar has its label on a line of its own above it and its number written at its end,
so a chart reads well at 360 px: the label never competes with the bar for width. The
Content-Security-Policy forbids inline styles, so only SVG presentation attributes
(fill, font-size, x, y...) are used; the page's `.narrow` box limits the width.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

#: The drawing's own units; the SVG scales to its box (width 100%) through the viewBox.
WIDTH: Final = 360
ROW: Final = 46
LABEL_BASELINE: Final = 17
BAR_TOP: Final = 23
BAR_HEIGHT: Final = 16
#: Room kept right of the longest bar for its number.
VALUE_ROOM: Final = 64
FONT_SIZE: Final = 14
#: Longer labels are cut in the drawing (the table beside it shows them whole).
MAX_LABEL: Final = 44
BAR_FILL: Final = "#0b5cad"
TEXT_FILL: Final = "#1b1f23"

_NOT_ID: Final = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class Bar:
    """One bar: its label and number, and where they are drawn."""

    label: str
    value: int
    text: str  # the number as written
    y: float  # top of the bar
    width: float
    label_y: float  # baseline of the label
    value_x: float  # start of the number
    value_y: float  # baseline of the number


@dataclass(frozen=True)
class BarChart:
    """A horizontal bar chart, ready to draw."""

    id: str
    title: str
    description: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    empty_text: str


def chart_id(name: str) -> str:
    """An element id made from any name (`cases_by status` -> `chart-cases-by-status`)."""
    slug = _NOT_ID.sub("-", name.lower()).strip("-")
    return "chart-" + (slug or "x")


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def bar_chart(
    counts: Mapping[str, int | None],
    *,
    title: str,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    empty_text: str = "No data",
    number: Callable[[int], str] = str,
    suppressed_text: str = "<5",
) -> BarChart:
    """The geometry of a chart of `counts` ({key: count}), in the order given.

    `labels` gives the words shown for a key (the key itself otherwise). The longest bar
    is the largest count; a count of zero has no bar, only its number. `number` writes
    a count in the reader's locale. A suppressed count (None) has no bar either, only
    `suppressed_text`.
    """
    shown = labels or {}
    items = [
        (shown.get(key, key), None if value is None else max(0, int(value)))
        for key, value in counts.items()
    ]
    largest = max((value or 0 for _, value in items), default=0)
    room = WIDTH - VALUE_ROOM
    bars = []
    for index, (label, count) in enumerate(items):
        top = index * ROW
        value = count or 0
        width = round(room * value / largest, 1) if largest else 0.0
        bars.append(
            Bar(
                label=label,
                value=value,
                text=suppressed_text if count is None else number(value),
                y=top + BAR_TOP,
                width=width,
                label_y=top + LABEL_BASELINE,
                value_x=round(width + 6, 1),
                value_y=top + BAR_TOP + BAR_HEIGHT - 3,
            )
        )
    description = "; ".join(f"{b.label}: {b.text}" for b in bars) or empty_text
    return BarChart(
        id=chart_id(name or title),
        title=title,
        description=description,
        bars=tuple(bars),
        width=WIDTH,
        height=max(len(bars), 1) * ROW,
        empty_text=empty_text,
    )


def svg(chart: BarChart) -> Markup:
    """The chart as an inline `<svg>` element, every text escaped.

    `role="img"` with a title and a description naming every number, so a screen reader
    hears the figures; the numbers are also drawn as text beside their bars.
    """
    title_id, desc_id = f"{chart.id}-title", f"{chart.id}-desc"
    parts = [
        f'<svg class="chart" id="{chart.id}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {chart.width} {chart.height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" font-size="{FONT_SIZE}">',
        f'<title id="{title_id}">{escape(chart.title)}</title>',
        f'<desc id="{desc_id}">{escape(chart.description)}</desc>',
    ]
    if not chart.bars:
        parts.append(
            f'<text x="0" y="{LABEL_BASELINE + 10}" fill="{TEXT_FILL}">'
            f"{escape(chart.empty_text)}</text>"
        )
    for bar in chart.bars:
        parts.append(
            f'<text x="0" y="{bar.label_y}" fill="{TEXT_FILL}">{escape(_short(bar.label))}</text>'
        )
        if bar.width > 0:
            parts.append(
                f'<rect x="0" y="{bar.y}" width="{bar.width}" height="{BAR_HEIGHT}" '
                f'fill="{BAR_FILL}"></rect>'
            )
        parts.append(
            f'<text x="{bar.value_x}" y="{bar.value_y}" fill="{TEXT_FILL}" '
            f'font-weight="bold">{escape(bar.text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped


def draw(
    counts: Mapping[str, int | None],
    *,
    title: str,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    empty_text: str = "No data",
    number: Callable[[int], str] = str,
    suppressed_text: str = "<5",
) -> Markup:
    """`svg(bar_chart(...))`: the chart as the template puts it on the page."""
    return svg(
        bar_chart(
            counts,
            title=title,
            name=name,
            labels=labels,
            empty_text=empty_text,
            number=number,
            suppressed_text=suppressed_text,
        )
    )
