"""The report of a migration's A/B test (issue 11 item 5): per arm (source, target)
over the test's window — searches, users, click-through, helpful votes, zero-result
rate, latency p50/p95 — a two-proportion z-test for click-through and zero-result
rate, and a verdict in plain words.

Read from the search log: each search made while the test ran carries its arm
(search.services.search_log.ab_arm); clicks (a result opened) and votes are its
feedback rows. Why a z-test and a minimum per arm: docs/decisions.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils.html import escape
from django.utils.translation import gettext as _, gettext_noop

from search.migration_models import SpaceMigration
from search.models import Feedback, SearchArm, SearchLog

# Two-sided significance level of each test.
ALPHA = 0.05

METRIC_LABELS = {"click_through": gettext_noop("click-through"),
                 "zero_result_rate": gettext_noop("zero-result rate")}
# Whether a higher share is better for the users.
HIGHER_IS_BETTER = {"click_through": True, "zero_result_rate": False}


@dataclass
class ArmStats:
    arm: str
    searches: int = 0
    users: int = 0
    clicked: int = 0        # searches with at least one result opened
    zero_results: int = 0   # searches that found nothing
    helpful: int = 0
    votes: int = 0          # helpful + not helpful
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None

    @property
    def click_through(self) -> float | None:
        return self.clicked / self.searches if self.searches else None

    @property
    def zero_result_rate(self) -> float | None:
        return self.zero_results / self.searches if self.searches else None

    @property
    def helpful_share(self) -> float | None:
        return self.helpful / self.votes if self.votes else None


@dataclass
class Comparison:
    """Target against source on one share: z > 0 means the target's share is higher."""
    metric: str
    source: float | None
    target: float | None
    z: float
    p_value: float
    significant: bool
    target_better: bool | None  # None: no significant difference

    @property
    def label(self) -> str:
        return _(METRIC_LABELS[self.metric])


@dataclass
class ABReport:
    migration_id: int
    started_at: datetime | None
    ended_at: datetime | None
    min_searches: int
    source: ArmStats
    target: ArmStats
    comparisons: list[Comparison] = field(default_factory=list)
    enough: bool = False
    verdict: str = ""

    @property
    def arms(self) -> list[ArmStats]:
        return [self.source, self.target]


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) of the difference x2/n2 − x1/n1, with the pooled standard error.
    p = erfc(|z|/√2) is the normal tail exactly (what scipy.stats.norm.sf(|z|)·2 gives)."""
    if not n1 or not n2:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:  # both shares 0 or both 1: no difference to see
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _window_sql(migration: SpaceMigration, alias: str) -> tuple[str, list]:
    # `arm <> ''` repeats the partial index's condition (search_log_ab_window) so it is used.
    sql = f"{alias}.arm <> '' AND {alias}.created_at >= %s"
    params: list = [migration.ab_started_at]
    if migration.ab_ended_at:
        sql += f" AND {alias}.created_at <= %s"
        params.append(migration.ab_ended_at)
    return sql, params


def arm_stats(migration: SpaceMigration) -> dict[str, ArmStats]:
    arms = {arm: ArmStats(arm) for arm in SearchArm.values}
    if migration.ab_started_at is None:
        return arms
    log, feedback = SearchLog._meta.db_table, Feedback._meta.db_table
    where, params = _window_sql(migration, "l")
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT l.arm, count(*), count(DISTINCT coalesce('u' || l.user_id::text, 'c' || l.client_key)), "
            f"count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {feedback} f WHERE f.search_id = l.id AND f.kind = %s)), "
            f"count(*) FILTER (WHERE l.result_count = 0), "
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY l.latency_ms), "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms) "
            f"FROM {log} l WHERE {where} GROUP BY l.arm", [Feedback.Kind.CLICK, *params])
        for arm, searches, users, clicked, zero, p50, p95 in cur.fetchall():
            if arm in arms:
                arms[arm] = ArmStats(arm, searches, users, clicked, zero, latency_p50_ms=p50, latency_p95_ms=p95)
        cur.execute(
            f"SELECT l.arm, count(*) FILTER (WHERE f.kind = %s), count(*) FROM {feedback} f "
            f"JOIN {log} l ON l.id = f.search_id WHERE f.kind IN (%s, %s) AND {where} GROUP BY l.arm",
            [Feedback.Kind.HELPFUL, Feedback.Kind.HELPFUL, Feedback.Kind.NOT_HELPFUL, *params])
        for arm, helpful, votes in cur.fetchall():
            if arm in arms:
                arms[arm].helpful, arms[arm].votes = helpful, votes
    return arms


def compare(source: ArmStats, target: ArmStats, metric: str) -> Comparison:
    count = {"click_through": "clicked", "zero_result_rate": "zero_results"}[metric]
    z, p = two_proportion_z(getattr(source, count), source.searches, getattr(target, count), target.searches)
    significant = p < ALPHA
    return Comparison(metric, getattr(source, metric), getattr(target, metric), z, p, significant,
                      ((z > 0) == HIGHER_IS_BETTER[metric]) if significant else None)


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"={p:.3f}"


def percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f}%"


def verdict(report: ABReport) -> str:
    """The report in plain words, in the request's language."""
    if report.started_at is None:
        return _("The A/B test has not started.")
    fewest = min(report.source.searches, report.target.searches)
    if not report.enough:
        return _("Not enough searches yet (%(n)s of %(min)s per arm); no conclusion can be drawn.") % {
            "n": fewest, "min": report.min_searches}
    found = [c for c in report.comparisons if c.significant]
    if not found:
        return _("No significant difference between the arms (%(tests)s).") % {
            "tests": ", ".join(f"{c.label} p{p_text(c.p_value)}" for c in report.comparisons)}
    sentences = []
    for c in found:
        values = {"metric": c.label, "target": percent(c.target), "source": percent(c.source),
                  "p": p_text(c.p_value)}
        if c.target_better:
            sentences.append(_("The target is better on %(metric)s (%(target)s against %(source)s, p%(p)s).")
                             % values)
        else:
            sentences.append(_("The target is worse on %(metric)s (%(target)s against %(source)s, p%(p)s).")
                             % values)
    return " ".join(sentences)


def assess(rep: ABReport) -> ABReport:
    """Fill in whether there are enough searches, the tests and the verdict."""
    rep.enough = min(rep.source.searches, rep.target.searches) >= rep.min_searches
    rep.comparisons = [compare(rep.source, rep.target, m) for m in ("click_through", "zero_result_rate")]
    rep.verdict = verdict(rep)
    return rep


def report(migration: SpaceMigration) -> ABReport:
    arms = arm_stats(migration)
    return assess(ABReport(migration.pk, migration.ab_started_at, migration.ab_ended_at,
                           settings.MIGRATION_AB_MIN_SEARCHES, arms[SearchArm.SOURCE], arms[SearchArm.TARGET]))


def text_lines(rep: ABReport) -> list[str]:
    """The report as plain text (manage.py migrate_space status)."""
    if rep.started_at is None:
        return [rep.verdict]
    end = f"{rep.ended_at:%Y-%m-%d %H:%M}" if rep.ended_at else _("now")
    lines = [_("A/B test %(start)s – %(end)s:") % {"start": f"{rep.started_at:%Y-%m-%d %H:%M}", "end": end}]
    header = [_("arm"), _("searches"), _("users"), _("click-through"), _("helpful votes"), _("zero-result rate"),
              _("latency p50 (ms)"), _("latency p95 (ms)")]
    rows = [[str(SearchArm(a.arm).label), str(a.searches), str(a.users), percent(a.click_through),
             f"{percent(a.helpful_share)} ({a.helpful}/{a.votes})", percent(a.zero_result_rate),
             milliseconds(a.latency_p50_ms), milliseconds(a.latency_p95_ms)] for a in rep.arms]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append(("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths))).rstrip())
    lines.append(rep.verdict)
    return lines


def milliseconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


ARM_COLOURS = {SearchArm.SOURCE: "#1f6feb", SearchArm.TARGET: "#067647"}


def comparison_svg(rep: ABReport, *, width: int = 560) -> str:
    """The arms side by side as inline SVG, drawn on the server (no chart library, nothing
    loaded from elsewhere): a pair of bars per measure; shares on a 0–100% scale,
    latencies on one scale up to the largest p95."""
    if rep.started_at is None:
        return ""
    slowest = max([a.latency_p95_ms or 0 for a in rep.arms] + [1e-9])
    measures = [(_("click-through"), lambda a: a.click_through, 1.0, percent),
                (_("helpful votes"), lambda a: a.helpful_share, 1.0, percent),
                (_("zero-result rate"), lambda a: a.zero_result_rate, 1.0, percent),
                (_("latency p50 (ms)"), lambda a: a.latency_p50_ms, slowest, milliseconds),
                (_("latency p95 (ms)"), lambda a: a.latency_p95_ms, slowest, milliseconds)]
    left, right, top, row = 150, width - 70, 26, 34
    height = top + row * len(measures) + 4
    # (gettext outside the f-strings: makemessages does not see into them)
    title = escape(_("The A/B arms compared"))
    parts = [f'<svg class="ab-comparison" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{title}">']
    for i, arm in enumerate(rep.arms):
        x = left + i * 110
        parts.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{ARM_COLOURS[arm.arm]}"/>'
                     f'<text x="{x + 14}" y="13" font-size="11" fill="#344054">'
                     f'{escape(str(SearchArm(arm.arm).label))}</text>')
    for m, (label, value, scale, shown) in enumerate(measures):
        y = top + m * row
        parts.append(f'<text x="{left - 8}" y="{y + 17}" font-size="11" fill="#344054" text-anchor="end">'
                     f'{escape(label)}</text>')
        for i, arm in enumerate(rep.arms):
            v = value(arm)
            bar_y = y + 3 + i * 13
            length = 0 if v is None else max(0.0, min(1.0, v / scale)) * (right - left)
            parts.append(f'<rect x="{left}" y="{bar_y}" width="{length:.1f}" height="11" '
                         f'fill="{ARM_COLOURS[arm.arm]}"/>'
                         f'<text x="{left + length + 4:.1f}" y="{bar_y + 9}" font-size="10" fill="#667085">'
                         f'{escape(shown(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)
