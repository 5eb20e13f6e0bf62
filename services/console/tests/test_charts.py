"""Server-drawn SVG bar charts: geometry, escaping, empty data (unit tier)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from lintas_console.entrypoints.charts import (
    BAR_HEIGHT,
    ROW,
    VALUE_ROOM,
    WIDTH,
    bar_chart,
    chart_id,
    draw,
    svg,
)

pytestmark = pytest.mark.unit
SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: object) -> ET.Element:
    """Our own drawing, parsed to look at its elements."""
    return ET.fromstring(str(markup))  # noqa: S314 - the chart module's output, not input


def test_the_largest_count_fills_the_room_and_the_others_are_in_proportion() -> None:
    chart = bar_chart({"referred": 10, "submitted": 5, "closed": 0}, title="Cases by status")
    widest = WIDTH - VALUE_ROOM
    assert [b.width for b in chart.bars] == [widest, widest / 2, 0.0]
    assert [b.y for b in chart.bars] == [23, 23 + ROW, 23 + 2 * ROW]
    assert chart.height == 3 * ROW
    # Each number is written just past the end of its bar, on the bar's line.
    for bar in chart.bars:
        assert bar.value_x == pytest.approx(bar.width + 6)
        assert bar.y < bar.value_y <= bar.y + BAR_HEIGHT
        assert bar.label_y < bar.y  # the label sits above its bar


def test_the_drawing_has_a_rect_per_nonzero_bar_and_every_number_as_text() -> None:
    markup = draw({"HK": 7, "SG": 3, "MY": 0}, title="By country", labels={"HK": "Hong Kong"})
    root = _parse(markup)
    rects = root.findall(f"{SVG}rect")
    assert len(rects) == 2
    assert rects[0].get("width") == str(float(WIDTH - VALUE_ROOM))
    texts = [t.text for t in root.findall(f"{SVG}text")]
    assert texts == ["Hong Kong", "7", "SG", "3", "MY", "0"]


def test_the_chart_is_an_image_named_by_its_title_and_described_by_its_numbers() -> None:
    markup = str(draw({"a": 1, "b": 2}, title="Claims by type", name="claim-type"))
    root = _parse(markup)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "chart-claim-type-title chart-claim-type-desc"
    assert root.find(f"{SVG}title").text == "Claims by type"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "a: 1; b: 2"  # type: ignore[union-attr]
    # Readable at 360 px: it scales to its box, and draws with attributes only (the
    # Content-Security-Policy refuses inline styles).
    assert root.get("viewBox") == f"0 0 {WIDTH} {2 * ROW}"
    assert root.get("width") == "100%"
    assert "style" not in markup


def test_labels_and_titles_are_escaped() -> None:
    markup = str(
        draw(
            {'<script>alert("x")</script>': 3, "Tom & Jerry": 1},
            title="<b>Bold</b> & co",
        )
    )
    assert "<script>" not in markup
    assert "<b>" not in markup
    assert "&lt;script&gt;" in markup
    assert "Tom &amp; Jerry" in markup
    _parse(markup)  # still well-formed


def test_no_data_draws_a_message_and_no_bars() -> None:
    chart = bar_chart({}, title="Outcomes", empty_text="None in this period.")
    assert chart.bars == ()
    assert chart.height == ROW
    root = _parse(svg(chart))
    assert root.findall(f"{SVG}rect") == []
    assert [t.text for t in root.findall(f"{SVG}text")] == ["None in this period."]
    assert root.find(f"{SVG}desc").text == "None in this period."  # type: ignore[union-attr]


def test_all_zero_counts_draw_no_bars_but_their_numbers() -> None:
    chart = bar_chart({"sent": 0, "delivered": 0}, title="SMS")
    assert [b.width for b in chart.bars] == [0.0, 0.0]
    assert "<rect" not in str(svg(chart))


def test_numbers_are_written_in_the_readers_locale() -> None:
    chart = bar_chart({"a": 12000}, title="t", number=lambda n: f"{n:,}".replace(",", "."))
    assert chart.bars[0].text == "12.000"
    assert ">12.000</text>" in str(svg(chart))


def test_long_labels_are_cut_in_the_drawing_only() -> None:
    long = "organisation-" + "x" * 80
    chart = bar_chart({long: 1}, title="t")
    assert chart.bars[0].label == long
    drawn = [t.text or "" for t in _parse(svg(chart)).findall(f"{SVG}text")]
    assert drawn[0].endswith("…")
    assert len(drawn[0]) < len(long)


def test_chart_ids_are_valid_element_ids() -> None:
    assert chart_id("Cases by status") == "chart-cases-by-status"
    assert chart_id("  ") == "chart-x"
    assert re.fullmatch(r"chart-[a-z0-9-]+", chart_id("Ünïcode / <weird> name"))
