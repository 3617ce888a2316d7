"""Inline SVG charts for the dashboard: no script, no external asset, readable as text.

Every chart is one ``<svg class="chart" data-chart=KIND>`` whose marks carry their number in
``data-value`` and a ``<title>`` tooltip, so the page works offline and tests can read the
rendered values from the DOM. Sizes are CSS pixels; values are drawn to a linear scale from 0
(bars, histograms) or from the data's range (lines).
"""

from __future__ import annotations

import html
from typing import Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
FONT = 'font-family="sans-serif" font-size="11"'


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _svg(kind: str, width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg class="chart" data-chart="{kind}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" {FONT}>'
            f'<title>{esc(title)}</title>{"".join(body)}</svg>')


def empty_note(text: str) -> str:
    return f'<p class="empty">{esc(text)}</p>'


def hbar_chart(items: Sequence[tuple[str, float]], title: str, width: int = 560, color: str = PALETTE[0]) -> str:
    """Horizontal bars, one per ``(label, value)``, longest = ``max(value)``."""
    if not items:
        return empty_note(f"{title}: nothing to show")
    label_w, row_h, top = 220, 18, 4
    top_value = max(v for _, v in items) or 1
    body = []
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        length = (width - label_w - 60) * value / top_value
        body.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{esc(str(label)[:40])}</text>'
                    f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{length:.1f}" height="{row_h - 4}" '
                    f'fill="{color}" data-label="{esc(label)}" data-value="{_num(value)}">'
                    f'<title>{esc(label)}: {_num(value)}</title></rect>'
                    f'<text x="{label_w + length + 4:.1f}" y="{y + 12}">{_num(value)}</text>')
    return _svg("hbar", width, top * 2 + row_h * len(items), body, title)


def grouped_bars(groups: Sequence[str], series: dict[str, Sequence[float]], title: str, width: int = 640,
                 height: int = 220) -> str:
    """Vertical bars: one cluster per group (x axis), one bar per series inside it, and a legend."""
    if not groups or not series:
        return empty_note(f"{title}: nothing to show")
    left, bottom, top, legend_h = 40, 34, 8, 16 * ((len(series) + 3) // 4)
    plot_h = height - bottom - top
    top_value = max((v for values in series.values() for v in values), default=0) or 1
    cluster = (width - left - 10) / len(groups)
    bar_w = max(2.0, cluster * 0.8 / len(series))
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 5}" y2="{top + plot_h}" stroke="#888"/>',
            f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{_num(top_value)}</text>']
    for g, group in enumerate(groups):
        x0 = left + g * cluster + cluster * 0.1
        body.append(f'<text x="{x0 + cluster * 0.4:.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                    f'{esc(group)}</text>')
        for s, (name, values) in enumerate(series.items()):
            value = values[g]
            h = plot_h * value / top_value
            body.append(f'<rect class="bar" x="{x0 + s * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                        f'height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}" data-label="{esc(name)}" '
                        f'data-group="{esc(group)}" data-value="{_num(value)}"><title>{esc(group)} / {esc(name)}: '
                        f'{_num(value)}</title></rect>')
    for s, name in enumerate(series):
        x, y = left + (s % 4) * ((width - left) / 4), height - legend_h + 12 + 16 * (s // 4) - 4
        body.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" fill="{PALETTE[s % len(PALETTE)]}"/>'
                    f'<text x="{x + 14:.1f}" y="{y}">{esc(name)}</text>')
    return _svg("grouped", width, height + legend_h, body, title)


def histogram(counts: Sequence[int], edges: Sequence[float], title: str, width: int = 260, height: int = 120,
              color: str = PALETTE[0]) -> str:
    """Bars of ``counts[i]`` over ``[edges[i], edges[i+1])``; the x axis shows the outer edges."""
    if not counts or sum(counts) == 0:
        return empty_note(f"{title}: no values")
    left, bottom, top = 30, 28, 16
    plot_w, plot_h = width - left - 6, height - bottom - top
    top_value = max(counts)
    bar_w = plot_w / len(counts)
    body = [f'<text x="{left}" y="11">{esc(title)}</text>',
            f'<text x="{left - 3}" y="{top + 10}" text-anchor="end">{top_value}</text>',
            f'<text x="{left}" y="{height - 6}">{_num(edges[0])}</text>',
            f'<text x="{width - 6}" y="{height - 6}" text-anchor="end">{_num(edges[-1])}</text>']
    for i, count in enumerate(counts):
        h = plot_h * count / top_value
        body.append(f'<rect class="bar" x="{left + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" '
                    f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="{color}" data-value="{count}">'
                    f'<title>[{_num(edges[i])}, {_num(edges[i + 1])}): {count}</title></rect>')
    return _svg("histogram", width, height, body, title)


def line_chart(series: dict[str, Sequence[tuple[float, float]]], title: str, width: int = 300,
               height: int = 150) -> str:
    """One polyline with dot markers per series of ``(x, y)`` points (x = round)."""
    points = [p for values in series.values() for p in values]
    if not points:
        return empty_note(f"{title}: no values")
    left, bottom, top, right = 44, 22, 18, 10
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    x_span, y_span = (x_hi - x_lo) or 1, (y_hi - y_lo) or 1

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (width - left - right) * (x - x_lo) / x_span,
                top + (height - top - bottom) * (1 - (y - y_lo) / y_span))

    body = [f'<text x="{left}" y="11">{esc(title)}</text>',
            f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{_num(float(y_hi))}</text>',
            f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">{_num(float(y_lo))}</text>',
            f'<text x="{left}" y="{height - 6}">round {_num(x_lo)}</text>',
            f'<text x="{width - right}" y="{height - 6}" text-anchor="end">round {_num(x_hi)}</text>']
    for s, (name, values) in enumerate(series.items()):
        color = PALETTE[s % len(PALETTE)]
        coords = [at(x, y) for x, y in values]
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                    f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}"/>')
        body += [f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}" data-label="{esc(name)}" '
                 f'data-x="{_num(x)}" data-value="{_num(y)}"><title>{esc(name)} round {_num(x)}: {_num(y)}</title>'
                 f'</circle>' for (cx, cy), (x, y) in zip(coords, values)]
    return _svg("line", width, height, body, title)


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[float]], title: str, cell: int = 44) -> str:
    """A square matrix (``matrix[i][j]`` for row label i, column label j), darker = larger."""
    if not labels:
        return empty_note(f"{title}: nothing to show")
    left, top = 130, 90
    size = len(labels)
    top_value = max((v for row in matrix for v in row), default=0) or 1
    body = []
    for j, label in enumerate(labels):
        x = left + j * cell + cell / 2
        body.append(f'<text transform="translate({x:.1f},{top - 6}) rotate(-45)">{esc(label[:18])}</text>')
    for i, label in enumerate(labels):
        y = top + i * cell
        body.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end">{esc(label[:20])}</text>')
        for j in range(size):
            value = matrix[i][j]
            shade = 0.1 + 0.9 * value / top_value
            body.append(f'<rect class="cell" x="{left + j * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                        f'fill="{PALETTE[0]}" fill-opacity="{shade:.2f}" data-row="{esc(label)}" '
                        f'data-col="{esc(labels[j])}" data-value="{_num(value)}"><title>{esc(label)} &amp; '
                        f'{esc(labels[j])}: {_num(value)}</title></rect>'
                        f'<text x="{left + j * cell + cell / 2 - 1:.1f}" y="{y + cell / 2 + 4:.1f}" '
                        f'text-anchor="middle">{_num(value)}</text>')
    return _svg("heatmap", left + size * cell + 10, top + size * cell + 10, body, title)
