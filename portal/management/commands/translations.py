"""`manage.py translations update|check|missing`: the catalog workflow
(docs/translations.md)."""
from django.core.management.base import BaseCommand, CommandError

from portal import catalogs


class Command(BaseCommand):
    help = ("update: regenerate locale/{vi,en} from the sources (makemessages), fill msgids written in the "
            "catalog's own language, compile. check: fail on any untranslated, fuzzy, missing or obsolete "
            "entry, a stale .mo, or a Django/guardian/DRF message without Vietnamese. missing: list those.")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=("update", "check", "missing"))

    def handle(self, action, **options):
        if action == "update":
            filled = catalogs.update(verbosity=options["verbosity"])
            self.stdout.write(f"catalogs regenerated and compiled; {filled} entries filled with their own msgid")
            untranslated, fuzzy = catalogs.translation_gaps()
            for name, msgids in {**untranslated}.items():
                for msgid in msgids:
                    self.stdout.write(f"  to translate in {name}: {msgid!r}")
            for name, msgids in fuzzy.items():
                for msgid in msgids:
                    self.stdout.write(f"  fuzzy in {name} (review): {msgid!r}")
            return
        if action == "missing":
            for msgid in catalogs.third_party_without_vietnamese():
                self.stdout.write(repr(msgid))
            return
        report = catalogs.check()
        for line in report.lines():
            self.stdout.write(line)
        if not report.ok:
            raise CommandError(f"{len(report.lines())} translation problem(s)")
        self.stdout.write("catalogs complete and current")
