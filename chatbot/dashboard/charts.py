"""Small server-rendered SVG charts: pictures in the page without a JavaScript chart library.

Each function returns safe SVG markup sized by a viewBox (it scales to its container), with a <title> for screen
readers and a tooltip <title> on every bar and point.
"""

import math
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 200
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 26


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]
    color: str


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:.0f}" if float(value).is_integer() or value >= 100 else f"{value:.1f}"


def _frame(title: str, body: list[str], *, top: float, height: int = HEIGHT) -> SafeString:
    plot_h = height - TOP - BOTTOM
    grid = []
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        grid.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{escape(_number(top * fraction))}'
            "</text>"
        )
    return mark_safe(  # noqa: S308 - every value interpolated above and in `body` is escaped or numeric
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(title)}</title>{''.join(grid)}{''.join(body)}</svg>"
    )


def _x_labels(labels: list[str], step_x: float, *, height: int = HEIGHT) -> list[str]:
    every = max(1, math.ceil(len(labels) / 8))
    return [
        f'<text x="{LEFT + step_x * (i + 0.5):.1f}" y="{height - 8}" class="axis" text-anchor="middle">'
        f"{escape(label)}</text>"
        for i, label in enumerate(labels)
        # The last label too, unless it would overlap the one before it.
        if i % every == 0 or (i == len(labels) - 1 and i % every >= every / 2)
    ]


def bar_chart(*, title: str, labels: list[str], series: list[Series], unit: str = "") -> SafeString:
    """Vertical bars, one per label; several series stack."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    plot_h = HEIGHT - TOP - BOTTOM
    step_x = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    bar_w = max(step_x * 0.7, 1)
    body = []
    for i, label in enumerate(labels):
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            h = plot_h * value / top
            y = TOP + plot_h * (1 - (base + value) / top)
            body.append(
                f'<rect x="{LEFT + step_x * i + (step_x - bar_w) / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{escape(s.color)}"><title>{escape(label)}: {escape(s.name)} '
                f"{escape(_number(value))}{escape(unit)}</title></rect>"
            )
            base += value
    body += _x_labels(labels, step_x)
    return _frame(title, body, top=top)


def line_chart(*, title: str, labels: list[str], series: list[Series], unit: str = "") -> SafeString:
    """Lines with points; a None value leaves a gap."""
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0))
    plot_h = HEIGHT - TOP - BOTTOM
    step_x = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    body = []
    for s in series:
        segment: list[str] = []
        segments = [segment]
        for i, value in enumerate(s.values):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            x, y = LEFT + step_x * (i + 0.5), TOP + plot_h * (1 - value / top)
            segment.append(f"{x:.1f},{y:.1f}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{escape(s.color)}"><title>{escape(labels[i])}: '
                f"{escape(s.name)} {escape(_number(value))}{escape(unit)}</title></circle>"
            )
        for points in segments:
            if len(points) > 1:
                body.insert(
                    0,
                    f'<polyline points="{" ".join(points)}" fill="none" stroke="{escape(s.color)}" stroke-width="2"/>',
                )
    body += _x_labels(labels, step_x)
    return _frame(title, body, top=top)


def hbar_chart(*, title: str, items: list[tuple[str, float]], color: str = "#4f46e5", unit: str = "") -> SafeString:
    """Horizontal bars, one per named item (e.g. tokens per bot)."""
    row_h = 26
    height = max(len(items), 1) * row_h + 16
    label_w = 150
    top = _nice_max(max((v for _, v in items), default=0))
    body = []
    for i, (name, value) in enumerate(items):
        y = 8 + i * row_h
        w = (WIDTH - label_w - 70) * (value / top)
        body.append(
            f'<text x="{label_w - 8}" y="{y + 16}" class="axis" text-anchor="end">{escape(name[:24])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 8}" fill="{escape(color)}">'
            f"<title>{escape(name)}: {escape(_number(value))}{escape(unit)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" class="axis">{escape(_number(value))}{escape(unit)}</text>'
        )
    if not items:
        body.append(f'<text x="{WIDTH / 2}" y="24" class="axis" text-anchor="middle">No data yet</text>')
    return mark_safe(  # noqa: S308 - escaped above
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img"><title>{escape(title)}</title>'
        f"{''.join(body)}</svg>"
    )


def sparkline(*, title: str, values: list[float], color: str = "#4f46e5") -> SafeString:
    """A small bar per value, no axes: a trend beside a number (a topic's questions per day)."""
    width, height, gap = 120, 24, 1
    top = max(values, default=0) or 1
    step = width / max(len(values), 1)
    bars = "".join(
        f'<rect x="{i * step:.1f}" y="{height - height * v / top:.1f}" width="{max(step - gap, 1):.1f}" '
        f'height="{height * v / top:.1f}" fill="{escape(color)}"/>'
        for i, v in enumerate(values)
        if v
    )
    return mark_safe(  # noqa: S308 - numbers and an escaped colour and title
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        f"<title>{escape(title)}</title>{bars}</svg>"
    )
