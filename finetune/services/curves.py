"""The loss curve as inline SVG, drawn on the server (admin pages load no chart
library and nothing from elsewhere): training loss per step, and the eval
split's MRR@10 at each evaluation on a second scale."""
from __future__ import annotations

from django.utils.html import escape
from django.utils.translation import gettext as _

MAX_POINTS = 400


def _thin(points: list, limit: int = MAX_POINTS) -> list:
    if len(points) <= limit:
        return points
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)] + [points[-1]]


def _scale(values: list[float], low_px: float, high_px: float, floor: float | None = None,
           ceiling: float | None = None):
    lo = min(values) if floor is None else floor
    hi = max(values) if ceiling is None else ceiling
    span = (hi - lo) or 1.0
    return lambda v: high_px - (v - lo) / span * (high_px - low_px), lo, hi


def loss_curve_svg(loss_curve: list, eval_curve: list | None = None, *, total_steps: int | None = None,
                   width: int = 640, height: int = 200) -> str:
    """An <svg> element (empty string when there is nothing to draw)."""
    if not loss_curve and not eval_curve:
        return ""
    left, right, top, bottom = 48, width - 48, 12, height - 28
    steps = [p[0] for p in loss_curve] + [p[0] for p in (eval_curve or [])]
    last = max(total_steps or 0, max(steps) if steps else 1, 1)
    x = lambda s: left + (s / last) * (right - left)  # noqa: E731
    parts = [f'<svg class="loss-curve" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(_("Loss curve"))}">',
             f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#d0d5dd"/>',
             f'<text x="{left}" y="{height - 8}" font-size="11" fill="#667085">0</text>',
             f'<text x="{right}" y="{height - 8}" font-size="11" fill="#667085" text-anchor="end">{last}</text>',
             f'<text x="{(left + right) / 2}" y="{height - 8}" font-size="11" fill="#667085" '
             f'text-anchor="middle">{escape(_("step"))}</text>']
    if loss_curve:
        thin = _thin(loss_curve)
        y, lo, hi = _scale([p[1] for p in thin], top, bottom)
        points = " ".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in thin)
        parts += [f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{points}"/>',
                  f'<text x="{left - 4}" y="{top + 10}" font-size="11" fill="#1f6feb" text-anchor="end">{hi:.3g}</text>',
                  f'<text x="{left - 4}" y="{bottom}" font-size="11" fill="#1f6feb" text-anchor="end">{lo:.3g}</text>',
                  f'<text x="{left + 4}" y="{top + 12}" font-size="11" fill="#1f6feb">{escape(_("loss"))}</text>']
    if eval_curve:
        y, lo, hi = _scale([p[1] for p in eval_curve], top, bottom, 0.0, 1.0)
        points = " ".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in eval_curve)
        dots = "".join(f'<circle cx="{x(p[0]):.1f}" cy="{y(p[1]):.1f}" r="3" fill="#067647"/>' for p in eval_curve)
        parts += [f'<polyline fill="none" stroke="#067647" stroke-width="1.5" points="{points}"/>', dots,
                  f'<text x="{right + 4}" y="{top + 10}" font-size="11" fill="#067647">1</text>',
                  f'<text x="{right + 4}" y="{bottom}" font-size="11" fill="#067647">0</text>',
                  f'<text x="{right - 4}" y="{top + 12}" font-size="11" fill="#067647" text-anchor="end">'
                  f'{escape(_("MRR@10 on the eval split"))}</text>']
    parts.append("</svg>")
    return "".join(parts)
