"""Bar charts as geometry: values in, positioned bars out; the template draws them as SVG.

The dashboard draws its charts on the server (inline SVG with a title, a description and a
title per bar), so they need no script, no chart library and no CDN, and a screen reader
hears the same numbers a sighted reader sees.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 640
LABEL_WIDTH = 200
VALUE_WIDTH = 56
ROW_HEIGHT = 30
BAR_HEIGHT = 20
COLUMN_CHART_HEIGHT = 220
COLUMN_LABEL_SPACE = 34
COLUMN_VALUE_SPACE = 20
MAX_LABEL_CHARS = 26


@dataclass(frozen=True, slots=True)
class Datum:
    """One value to chart; `tone` picks a CSS class (e.g. `failed`), `href` links the bar."""

    label: str
    value: int
    tone: str = "default"
    href: str | None = None


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    short_label: str
    value: int
    tone: str
    href: str | None
    x: float
    y: float
    width: float
    height: float
    label_x: float
    label_y: float
    value_x: float
    value_y: float


@dataclass(frozen=True, slots=True)
class Chart:
    """A drawn chart: `horizontal` bars (categories) or vertical columns (days)."""

    slug: str
    title: str
    description: str
    horizontal: bool
    width: int
    height: int
    bars: tuple[Bar, ...]
    baseline_y: float
    total: int


def _slug(title: str) -> str:
    return "chart-" + (re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-") or "untitled")


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _describe(data: Sequence[Datum], unit: str) -> str:
    if not data or all(datum.value == 0 for datum in data):
        return f"No {unit} to show."
    parts = "; ".join(f"{datum.label}: {datum.value}" for datum in data)
    return f"{sum(d.value for d in data)} {unit} in all. {parts}."


def horizontal_bars(title: str, data: Sequence[Datum], *, unit: str = "devices") -> Chart:
    """One labelled bar per category, longest = largest value, value printed after it."""
    top = max((datum.value for datum in data), default=0) or 1
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    bars = []
    for index, datum in enumerate(data):
        y = index * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2
        width = span * datum.value / top
        bars.append(
            Bar(
                label=datum.label,
                short_label=_short(datum.label),
                value=datum.value,
                tone=datum.tone,
                href=datum.href,
                x=LABEL_WIDTH,
                y=y,
                width=round(width, 1),
                height=BAR_HEIGHT,
                label_x=LABEL_WIDTH - 8,
                label_y=y + BAR_HEIGHT / 2,
                value_x=round(LABEL_WIDTH + width + 6, 1),
                value_y=y + BAR_HEIGHT / 2,
            )
        )
    height = max(len(data), 1) * ROW_HEIGHT
    return Chart(
        slug=_slug(title),
        title=title,
        description=_describe(data, unit),
        horizontal=True,
        width=WIDTH,
        height=height,
        bars=tuple(bars),
        baseline_y=height,
        total=sum(datum.value for datum in data),
    )


def columns(title: str, data: Sequence[Datum], *, unit: str = "events") -> Chart:
    """One column per period (e.g. a day), labelled underneath, value printed above."""
    top = max((datum.value for datum in data), default=0) or 1
    count = max(len(data), 1)
    slot = WIDTH / count
    plot = COLUMN_CHART_HEIGHT - COLUMN_LABEL_SPACE - COLUMN_VALUE_SPACE
    baseline = COLUMN_CHART_HEIGHT - COLUMN_LABEL_SPACE
    bars = []
    for index, datum in enumerate(data):
        height = plot * datum.value / top
        x = index * slot + slot * 0.15
        bars.append(
            Bar(
                label=datum.label,
                short_label=_short(datum.label),
                value=datum.value,
                tone=datum.tone,
                href=datum.href,
                x=round(x, 1),
                y=round(baseline - height, 1),
                width=round(slot * 0.7, 1),
                height=round(height, 1),
                label_x=round(index * slot + slot / 2, 1),
                label_y=baseline + 18,
                value_x=round(index * slot + slot / 2, 1),
                value_y=round(baseline - height - 6, 1),
            )
        )
    return Chart(
        slug=_slug(title),
        title=title,
        description=_describe(data, unit),
        horizontal=False,
        width=WIDTH,
        height=COLUMN_CHART_HEIGHT,
        bars=tuple(bars),
        baseline_y=baseline,
        total=sum(datum.value for datum in data),
    )
