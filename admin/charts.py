"""Bar charts as inline SVG, drawn on the server: no JavaScript, no chart library, no CDN.

Each chart is a small `<svg>` element with a `viewBox` (it scales with the page), its colours set
by classes in `console.css` (the console's Content-Security-Policy allows no inline styles), a
`<title>` on every bar for the exact figure, and `role="img"` with a label; the pages print the
same figures in a table next to each chart, for screen readers and for copying.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

Number = int | float | Decimal


@dataclass(frozen=True)
class Bar:
    """One bar: its axis label, its value, and the words its tooltip shows."""

    label: str
    value: Number
    title: str = ""


def nice_step(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is >= `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def axis(top: float, intervals: int = 4) -> list[float]:
    """Round tick values from 0 up to at least `top`, about `intervals` of them apart."""
    step = nice_step(top / intervals) if top > 0 else 1.0
    count = max(1, math.ceil(top / step - 1e-9))
    return [step * i for i in range(count + 1)]


def _text(x: float, y: float, text: str, css: str, anchor: str = "middle") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="{css}" text-anchor="{anchor}">{escape(text)}</text>'
    )


def column_chart(
    bars: Sequence[Bar],
    label: str,
    fmt: Callable[[Number], str],
    *,
    width: int = 560,
    height: int = 220,
    css: str = "",
    tick_fmt: Callable[[Number], str] | None = None,
) -> Markup:
    """Vertical bars left to right (e.g. weeks), with a value axis and each value on its bar.

    `fmt` writes the values on the bars and in their titles; `tick_fmt` (default `fmt`) the axis.
    """
    tick_fmt = tick_fmt or fmt
    left, right, top, bottom = 56, 8, 18, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = axis(float(max((b.value for b in bars), default=0)))
    top_value = ticks[-1]
    parts = [
        f'<svg class="chart {css}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for value in ticks:  # grid lines at round values
        y = top + plot_h - plot_h * value / top_value
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(_text(left - 6, y + 4, tick_fmt(value), "tick", "end"))
    slot = plot_w / max(len(bars), 1)
    bar_w = max(2.0, slot * 0.7)
    for i, bar in enumerate(bars):
        x = left + slot * i + (slot - bar_w) / 2
        h = plot_h * float(bar.value) / top_value
        y = top + plot_h - h
        title = escape(bar.title or f"{bar.label}: {fmt(bar.value)}")
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" class="bar">'
            f"<title>{title}</title></rect>"
        )
        if bar.value:
            parts.append(_text(x + bar_w / 2, y - 4, fmt(bar.value), "value"))
        parts.append(_text(x + bar_w / 2, height - bottom + 16, bar.label, "label"))
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"'
        ' class="axis"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()


def row_chart(
    bars: Sequence[Bar],
    label: str,
    fmt: Callable[[Number], str],
    *,
    width: int = 560,
    row: int = 26,
    label_width: int = 170,
    css: str = "",
) -> Markup:
    """Horizontal bars top to bottom (e.g. materials, regions), each with its value at its end."""
    right, value_room = 8, 90
    plot_w = width - label_width - right - value_room
    height = max(row * len(bars), row) + 4
    top_value = float(max((b.value for b in bars), default=0)) or 1.0
    parts = [
        f'<svg class="chart {css}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, bar in enumerate(bars):
        y = 2 + row * i
        w = plot_w * float(bar.value) / top_value
        name = bar.label if len(bar.label) <= 24 else bar.label[:23] + "…"
        title = escape(bar.title or f"{bar.label}: {fmt(bar.value)}")
        parts.append(_text(label_width - 8, y + row * 0.65, name, "label", "end"))
        parts.append(
            f'<rect x="{label_width}" y="{y + 3:.1f}" width="{max(w, 1 if bar.value else 0):.1f}"'
            f' height="{row - 8}" class="bar"><title>{title}</title></rect>'
        )
        parts.append(_text(label_width + w + 6, y + row * 0.65, fmt(bar.value), "value", "start"))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()
