"""Charts for /admin drawn on the server as SVG: no script, no CDN, readable offline.

Every chart has a `<title>`, labelled axes and a legend; the page puts a table of the same
numbers next to it for screen readers and copying. Text is escaped here, the one place
chart text is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 36, 44


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # one per day; None: nothing to draw that day
    color: str


def _text(x: float, y: float, text: str, *, anchor: str = "middle", cls: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}">{escape(text)}</text>'
    )


def _nice_top(value: float) -> float:
    """A top for the axis at least `value` whose four grid steps are round whole numbers."""
    if value <= 0:
        return 4
    quarter = value / 4
    power = 10 ** math.floor(math.log10(max(quarter, 1)))
    steps = (s * power for s in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10))
    return 4 * next(s for s in steps if s >= quarter and float(s).is_integer())


def _frame(title: str, y_label: str, x_label: str, series: Sequence[Series]) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'class="chart" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    x = LEFT
    for s in series:  # the legend, along the top
        parts.append(
            f'<rect x="{x}" y="8" width="12" height="12" rx="2" fill="{s.color}" '
            f'class="legend-key"/>'
        )
        parts.append(_text(x + 18, 18, s.name, anchor="start", cls="legend"))
        x += 30 + 7 * len(s.name)
    parts.append(
        f'<text x="14" y="{TOP + (HEIGHT - TOP - BOTTOM) / 2:.1f}" text-anchor="middle" '
        f'class="axis-label" transform="rotate(-90 14 {TOP + (HEIGHT - TOP - BOTTOM) / 2:.1f})">'
        f"{escape(y_label)}</text>"
    )
    parts.append(_text(LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - 6, x_label, cls="axis-label"))
    return parts


def _grid(top: float, fmt: str) -> list[str]:
    """Four horizontal lines with their values on the left."""
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(_text(LEFT - 6, y + 4, fmt.format(value), anchor="end", cls="tick"))
    return parts


def _day_ticks(days: Sequence[date], slot: float) -> list[str]:
    """A date under the first bar and then about every seventh, so labels never overlap."""
    every = max(1, math.ceil(len(days) / 8))
    parts = []
    for i, day in enumerate(days):
        if i % every == 0:
            x = LEFT + slot * (i + 0.5)
            parts.append(_text(x, HEIGHT - BOTTOM + 16, f"{day:%b} {day.day}", cls="tick"))
    return parts


def stacked_bars(
    title: str, days: Sequence[date], series: Sequence[Series], *, y_label: str
) -> Markup:
    """One bar a day, the series stacked bottom to top."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(days))]
    top = _nice_top(max(totals, default=0))
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, slot * 0.7)
    parts = _frame(title, y_label, "Day (UTC)", series)
    parts += _grid(top, "{:.0f}")
    for i, day in enumerate(days):
        y = TOP + plot_h
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            height = plot_h * value / top
            y -= height
            parts.append(
                f'<rect class="bar" x="{LEFT + slot * i + (slot - bar_w) / 2:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{height:.1f}" fill="{s.color}">'
                f"<title>{escape(f'{day:%b} {day.day}: {value:g} {s.name.lower()}')}</title>"
                "</rect>"
            )
    parts += _day_ticks(days, slot)
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        'class="axis"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def share_lines(
    title: str, days: Sequence[date], series: Sequence[Series], *, y_label: str
) -> Markup:
    """Shares (0 to 1) per day as dots joined by lines; a day with no value is a gap."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    parts = _frame(title, y_label, "Day (UTC)", series)
    parts += _grid(100, "{:.0f}%")
    for s in series:
        run: list[str] = []
        dots = []
        for i, value in enumerate(s.values):
            if value is None:
                if len(run) > 1:
                    parts.append(_polyline(run, s.color))
                run = []
                continue
            x, y = LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * value
            run.append(f"{x:.1f},{y:.1f}")
            label = f"{days[i]:%b} {days[i].day}: {value:.0%} {s.name.lower()}"
            dots.append(
                f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{s.color}">'
                f"<title>{escape(label)}</title></circle>"
            )
        if len(run) > 1:
            parts.append(_polyline(run, s.color))
        parts += dots
    parts += _day_ticks(days, slot)
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        'class="axis"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def _polyline(points: list[str], color: str) -> str:
    return (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" '
        'stroke-width="2" class="line"/>'
    )


def hbars(title: str, rows: Sequence[tuple[str, int]], color: str = "#2f6fdb") -> Markup:
    """Horizontal bars, one per labelled count (escalations by reason)."""
    row_h, label_w, width = 26, 300, WIDTH
    height = TOP + row_h * max(1, len(rows)) + 8
    top = max((n for _, n in rows), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'class="chart hbars" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        _text(0, 18, title, anchor="start", cls="legend"),
    ]
    for i, (label, count) in enumerate(rows):
        y = TOP + row_h * i
        bar = (width - label_w - 60) * count / top
        parts.append(_text(label_w - 8, y + 15, label, anchor="end", cls="tick"))
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{max(bar, 1):.1f}" '
            f'height="{row_h - 8}" fill="{color}"><title>{escape(f"{label}: {count}")}</title>'
            "</rect>"
        )
        parts.append(_text(label_w + bar + 6, y + 15, str(count), anchor="start", cls="tick"))
    parts.append("</svg>")
    return Markup("".join(parts))
