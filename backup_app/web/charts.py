"""Small line charts drawn on the server as inline SVG (no JavaScript library).

Only SVG presentation attributes are used, never `style=`, so a strict Content-Security-Policy
needs no exception for them.
"""
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 640, 160, 36
COLOURS = ("#2f6fde", "#d9822b", "#2f9e5b", "#b44ac0")


def line_chart(title: str, series: dict[str, list[tuple[datetime, float]]], unit: str) -> Markup:
    """An SVG line chart of one or more series of (time, value) points, labelled with `unit`."""
    points = [p for values in series.values() for p in values]
    if not points:
        return Markup(f'<p class="empty">{escape(title)}: no completed backups in this period.</p>')
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    top = max(v for _, v in points) or 1
    span = (t1 - t0).total_seconds() or 1

    def xy(t: datetime, v: float) -> str:
        x = PAD + (t - t0).total_seconds() / span * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - v / top * (HEIGHT - 2 * PAD)
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<title>{escape(title)}</title>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#8a94a6"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#8a94a6"/>',
             f'<text x="{PAD}" y="{PAD - 8}" font-size="11" fill="#4a5466">{top:.3g} {escape(unit)}</text>',
             f'<text x="{PAD}" y="{HEIGHT - 10}" font-size="11" fill="#4a5466">{t0:%Y-%m-%d}</text>',
             f'<text x="{WIDTH - PAD}" y="{HEIGHT - 10}" font-size="11" fill="#4a5466" '
             f'text-anchor="end">{t1:%Y-%m-%d}</text>']
    for (name, values), colour in zip(sorted(series.items()), COLOURS * 100):
        if values:
            path = " ".join(xy(t, v) for t, v in values)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
                         f'<title>{escape(name)}</title></polyline>')
            for t, v in values:
                x, y = xy(t, v).split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}">'
                             f'<title>{escape(name)} {t:%Y-%m-%d %H:%M}: {v:.3g} {escape(unit)}</title></circle>')
    legend_x = PAD + 80
    for (name, _), colour in zip(sorted(series.items()), COLOURS * 100):
        parts.append(f'<text x="{legend_x}" y="{PAD - 8}" font-size="11" fill="{colour}">{escape(name)}</text>')
        legend_x += 12 + 7 * len(name)
    parts.append("</svg>")
    return Markup("".join(parts))
