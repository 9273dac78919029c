"""manage.py migrate_space start|status|cancel|advance|rollback|compare|retire — migrations
between embedding spaces from the command line (issue 11).

    manage.py migrate_space start --target SPACE [--source SPACE] [--reason R] [--follow]
    manage.py migrate_space status [ID]
    manage.py migrate_space cancel ID --reason R [--follow]
    manage.py migrate_space advance ID [--to ab_testing|promoted] [--share 0.1] [--reason R] [--force]
    manage.py migrate_space rollback ID --reason R
    manage.py migrate_space compare ID --set NAME [--sync]
    manage.py migrate_space retire ID [--force --reason R] [--sync]

`start` queues the migration for a worker of the embed queue; --follow shows a
progress bar until the worker's part ends (evaluating, cancelled or failed).
`status` without an id lists the migrations; with one it also prints the comparison, the
A/B test's report (per arm, the significance tests and the verdict) once the test has
started, and the retirement. `compare` and `retire` queue their work on
the embed queue; --sync does it here and waits. Leaving evaluating needs a comparison
within the margin, or --force with a --reason.
"""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from search.migration_models import WORKER_STATES, MigrationState, SpaceMigration, state_label
from search.models import EmbeddingSpace
from search.services import ab_stats, migration_gate, migration_retire, space_migration as sm


def _space(name: str) -> EmbeddingSpace:
    space = EmbeddingSpace.objects.filter(name=name).first()
    if space is None:
        raise CommandError(_("There is no embedding space named %(name)s.") % {"name": name})
    return space


def _migration(pk: int) -> SpaceMigration:
    migration = SpaceMigration.objects.select_related("source", "target").filter(pk=pk).first()
    if migration is None:
        raise CommandError(_("There is no migration %(id)s.") % {"id": pk})
    return migration


def _size(n: int) -> str:
    from django.template.defaultfilters import filesizeformat

    return str(filesizeformat(n))


class Command(BaseCommand):
    help = "Start, follow, cancel, advance and roll back migrations between embedding spaces."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        start = sub.add_parser("start", help="migrate the portal from the active space to another space")
        start.add_argument("--target", required=True, help="the space to migrate to")
        start.add_argument("--source", help="the space to migrate from (the active one)")
        start.add_argument("--reason", default="")
        start.add_argument("--follow", action="store_true", help="show the progress until the worker's part ends")
        status = sub.add_parser("status", help="a migration's state and progress (none: the list)")
        status.add_argument("id", nargs="?", type=int)
        cancel = sub.add_parser("cancel", help="stop a migration and remove what it built")
        cancel.add_argument("id", type=int)
        cancel.add_argument("--reason", required=True)
        cancel.add_argument("--follow", action="store_true")
        advance = sub.add_parser("advance", help="evaluating → A/B test → promoted")
        advance.add_argument("id", type=int)
        advance.add_argument("--to", choices=[MigrationState.AB_TESTING, MigrationState.PROMOTED])
        advance.add_argument("--share", type=float, help="share of users in the A/B test (0-1)")
        advance.add_argument("--reason", default="")
        advance.add_argument("--force", action="store_true",
                             help="go on although the comparison refuses (needs --reason; recorded)")
        rollback = sub.add_parser("rollback", help="all traffic back to the source space")
        rollback.add_argument("id", type=int)
        rollback.add_argument("--reason", required=True)
        compare = sub.add_parser("compare", help="calibrate the target and score both spaces on an evaluation set")
        compare.add_argument("id", type=int)
        compare.add_argument("--set", required=True, dest="set_name", help="the evaluation set (e.g. samples)")
        compare.add_argument("--sync", action="store_true", help="run here and wait, instead of queueing it")
        retire = sub.add_parser("retire", help="delete the old space's vectors and index after the soak period")
        retire.add_argument("id", type=int)
        retire.add_argument("--force", action="store_true", help="before the soak period ends (needs --reason)")
        retire.add_argument("--reason", default="")
        retire.add_argument("--sync", action="store_true", help="run here and wait, instead of queueing it")

    def handle(self, *args, action, **options):
        try:
            return getattr(self, f"do_{action}")(**options)
        except sm.MigrationError as exc:
            raise CommandError(str(exc)) from None

    def do_start(self, target, source, reason, follow, **_options):
        migration = sm.start(_space(target), source=_space(source) if source else None, by="command line",
                             reason=reason)
        self.stdout.write(_("Migration %(id)s started: %(migration)s") % {"id": migration.pk,
                                                                        "migration": migration})
        if follow:
            self.follow(migration)

    def do_status(self, id, **_options):
        if id is None:
            for m in SpaceMigration.objects.select_related("source", "target")[:50]:
                self.stdout.write(f"{m.pk:>4}  {m}  {m.get_state_display()}  {m.done_chunks}/{m.total_chunks}  "
                                  f"{m.created_at:%Y-%m-%d %H:%M}")
            return
        m = _migration(id)
        self.stdout.write(f"{m}: {m.get_state_display()} — {m.status_message_display}")
        self.stdout.write(_("chunks %(done)s/%(total)s, %(rate)s chunks/s, about %(eta)s s left")
                          % {"done": m.done_chunks, "total": m.total_chunks, "rate": m.chunks_per_second or "—",
                             "eta": m.eta_seconds if m.eta_seconds is not None else "—"})
        if m.index_progress:
            self.stdout.write(_("index: %(progress)s") % {"progress": m.index_progress})
        if m.error:
            self.stdout.write(self.style.ERROR(m.error))
        if m.ab_started_at:
            for line in ab_stats.text_lines(ab_stats.report(m)):
                self.stdout.write(line)
        self.show_comparison(m)
        self.show_retirement(m)
        for event in m.history:
            reason = f" — {event['reason']}" if event.get("reason") else ""
            self.stdout.write(f"  {event['at']}  {state_label(event['from'])} → {state_label(event['to'])}  {event['by']}  "
                              f"{_(event['step']) if event.get('step') else ''}{reason}")

    def do_cancel(self, id, reason, follow, **_options):
        migration = sm.request_cancel(_migration(id), by="command line", reason=reason)
        self.stdout.write(_("Cancel requested for migration %(id)s.") % {"id": migration.pk})
        if follow:
            self.follow(migration)

    def do_advance(self, id, to, share, reason, force, **_options):
        migration = sm.advance(_migration(id), to=to, share=share, by="command line", reason=reason, force=force)
        self.stdout.write(_("Migration %(id)s is %(state)s.") % {"id": migration.pk,
                                                                "state": migration.get_state_display()})

    def do_rollback(self, id, reason, **_options):
        migration = sm.rollback(_migration(id), by="command line", reason=reason)
        self.stdout.write(_("Migration %(id)s is %(state)s.") % {"id": migration.pk,
                                                                "state": migration.get_state_display()})

    def do_compare(self, id, set_name, sync, **_options):
        migration = migration_gate.request_compare(_migration(id), set_name, by="command line", queue=not sync)
        if not sync:
            self.stdout.write(_("Comparison of migration %(id)s queued.") % {"id": migration.pk})
            return
        migration_gate.run_compare(migration.pk, migration.comparison["token"])
        migration.refresh_from_db()
        self.show_comparison(migration)
        if migration.comparison.get("status") != migration_gate.DONE:
            raise CommandError(migration.comparison.get("error") or _("The comparison failed."))

    def do_retire(self, id, force, reason, sync, **_options):
        migration = migration_retire.request_retire(_migration(id), by="command line", force=force, reason=reason,
                                                    queue=not sync)
        if not sync:
            self.stdout.write(_("Retirement of the space %(name)s queued.") % {"name": migration.source.name})
            return
        migration_retire.run_retire(migration.pk, migration.retirement["token"])
        migration.refresh_from_db()
        self.show_retirement(migration)
        if migration.retirement.get("status") != migration_retire.DONE:
            raise CommandError(migration.retirement.get("error") or _("The retirement failed."))

    def show_comparison(self, m: SpaceMigration) -> None:
        c = m.comparison or {}
        if not c:
            return
        self.stdout.write(_("comparison on %(set)s: %(status)s")
                          % {"set": c.get("set"), "status": migration_gate.label(c.get("status"))})
        for role in ("source", "target"):
            space = (c.get("spaces") or {}).get(role)
            if space:
                metrics = "  ".join(f"{k} {v:.4f}" for k, v in space["metrics"].items())
                self.stdout.write(f"  {space['name']:<24} {space['dimension']:>5}d  {metrics}")
        if c.get("status") == migration_gate.DONE:
            self.stdout.write("  " + migration_gate.verdict(m)["message"])
        if c.get("error"):
            self.stdout.write(self.style.ERROR("  " + c["error"]))

    def show_retirement(self, m: SpaceMigration) -> None:
        r = m.retirement or {}
        if not r:
            return
        self.stdout.write(_("retirement of %(space)s: %(status)s, %(rows)s vector rows deleted")
                          % {"space": r.get("space"), "status": migration_gate.label(r.get("status")),
                             "rows": r.get("deleted_rows", 0)})
        if r.get("freed"):
            freed, before, after = r["freed"], r["before"], r["after"]
            self.stdout.write(_("  vector storage %(before)s → %(after)s (%(percent)s%% freed); embedding table on "
                                "disk %(disk_before)s → %(disk_after)s")
                              % {"before": _size(before["vector_storage_bytes"]),
                                 "after": _size(after["vector_storage_bytes"]),
                                 "percent": freed["vector_storage_percent"],
                                 "disk_before": _size(before["table_total_bytes"]),
                                 "disk_after": _size(after["table_total_bytes"])})
        if r.get("error"):
            self.stdout.write(self.style.ERROR("  " + r["error"]))

    def follow(self, migration: SpaceMigration, interval: float = 1.0) -> None:
        """A progress bar over the backfill, then the index build, until a worker no longer
        has work (or a cancel has been carried out)."""
        from tqdm import tqdm

        with tqdm(total=max(migration.total_chunks, 1), unit="chunk", file=self.stderr._out) as bar:
            while True:
                migration.refresh_from_db()
                bar.total = max(migration.total_chunks, migration.done_chunks, 1)
                bar.n = migration.done_chunks
                phase = (migration.index_progress or {}).get("phase", "")
                bar.set_description(migration.get_state_display())
                bar.set_postfix_str(phase)
                bar.refresh()
                if migration.state not in WORKER_STATES and not (migration.cancel_requested and migration.is_open):
                    break
                time.sleep(interval)
        self.stdout.write(_("Migration %(id)s is %(state)s.") % {"id": migration.pk,
                                                                "state": migration.get_state_display()})
        if migration.state == MigrationState.FAILED:
            raise CommandError(migration.error or _("The migration failed."))
