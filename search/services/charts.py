"""Small charts as inline SVG, drawn on the server: admin pages load no chart library
and nothing from elsewhere (the fine-tuning app draws its loss curve the same way;
search may not import it)."""
from __future__ import annotations

from django.utils.html import escape

COLOURS = ("#98a2b3", "#1f6feb", "#067647", "#b54708")


def grouped_bars_svg(labels: list[str], series: list[tuple[str, list[float | None]]], *, title: str = "",
                     width: int = 560, bar: int = 12, maximum: float = 1.0) -> str:
    """Horizontal bars, one group per label, one bar per series (values 0..maximum),
    each with its value written after it; a legend on top. Empty string when there is
    nothing to draw."""
    if not labels or not series:
        return ""
    left, right, legend = 96, width - 56, 22
    group = bar * len(series) + 10
    height = legend + group * len(labels) + 6
    x = lambda v: left + max(0.0, min(v / maximum, 1.0)) * (right - left)  # noqa: E731
    parts = [f'<svg class="paired-bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}">']
    for i, (name, _values) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        lx = left + i * 180
        parts.append(f'<rect x="{lx}" y="4" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{lx + 14}" y="13" font-size="11" fill="#344054">{escape(name)}</text>')
    for g, label in enumerate(labels):
        top = legend + g * group
        parts.append(f'<text x="{left - 6}" y="{top + group / 2}" font-size="11" fill="#344054" '
                     f'text-anchor="end" dominant-baseline="middle">{escape(label)}</text>')
        for i, (_name, values) in enumerate(series):
            value = values[g] if g < len(values) else None
            y = top + i * bar
            if value is None:
                parts.append(f'<text x="{left + 4}" y="{y + bar - 3}" font-size="10" fill="#667085">—</text>')
                continue
            colour = COLOURS[i % len(COLOURS)]
            parts.append(f'<rect x="{left}" y="{y}" width="{x(value) - left:.1f}" height="{bar - 2}" '
                         f'fill="{colour}"><title>{escape(label)}: {value:.4f}</title></rect>'
                         f'<text x="{x(value) + 4:.1f}" y="{y + bar - 3}" font-size="10" fill="#344054">'
                         f'{value:.3f}</text>')
    parts.append(f'<line x1="{left}" y1="{legend - 2}" x2="{left}" y2="{height - 4}" stroke="#d0d5dd"/>')
    parts.append("</svg>")
    return "".join(parts)
