"""manage.py space list|create|activate|retire|backfill|ensure-default|onnx — embedding spaces."""
from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from tqdm import tqdm

from search.models import EmbeddingSpace, SpaceStatus
from search.services import embedding, spaces


class Command(BaseCommand):
    help = "Manage embedding spaces (the model registry)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list")
        create = sub.add_parser("create", help="register a sentence-transformers folder")
        create.add_argument("name")
        create.add_argument("model_path")
        create.add_argument("--activate", action="store_true")
        create.add_argument("--backfill", action="store_true", help="embed every chunk now, with a progress bar")
        for name in ("activate", "retire", "backfill"):
            sub.add_parser(name).add_argument("name")
        onnx = sub.add_parser("onnx", help="export the space's model to ONNX Runtime and check it against PyTorch")
        onnx.add_argument("name")
        onnx.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                          help="also the int8 (dynamic quantisation) export (default; --no-int8: fp32 only)")
        default = sub.add_parser("ensure-default", help="make sure an active space exists (first start)")
        default.add_argument("--prefer", choices=["e5", "minilm"], default=None,
                             help="default: PORTAL_DEFAULT_EMBEDDING")

    def handle(self, action, **opts):
        getattr(self, "do_" + action.replace("-", "_"))(**opts)

    def _get(self, name) -> EmbeddingSpace:
        space = EmbeddingSpace.objects.filter(name=name).first()
        if space is None:
            raise CommandError(f"No space named {name!r}.")
        return space

    def do_list(self, **opts):
        for s in EmbeddingSpace.objects.order_by("pk"):
            self.stdout.write(f"{s.name:24} {s.status:9} {s.dimension:5}d max {s.max_seq_length:4} "
                              f"share {s.traffic_share:.2f} chunks {s.embeddings.filter(window=0).count():7}  {s.model_path}")

    def do_create(self, name, model_path, activate, backfill, **opts):
        try:
            space = spaces.create_space(name, model_path)
        except spaces.SpaceError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"created {space}")
        if backfill:
            self._backfill(space)
        if activate:
            spaces.activate(space)
            self.stdout.write(f"activated {space.name}")

    def do_activate(self, name, **opts):
        spaces.activate(self._get(name))

    def do_retire(self, name, **opts):
        try:
            freed = spaces.retire(self._get(name))
        except spaces.SpaceError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"retired {name}: {freed['rows']} vectors, index {freed['index_bytes'] / 1e6:.1f} MB, "
                          f"vectors {freed['vector_bytes'] / 1e6:.1f} MB freed")

    def do_backfill(self, name, **opts):
        self._backfill(self._get(name))

    def do_onnx(self, name, int8, **opts):
        from search.services import onnx_spaces
        from search.services.model_import.onnx_export import OnnxExportError

        space = self._get(name)
        try:
            summary = onnx_spaces.export_space(space, int8=int8, progress=lambda step: self.stdout.write(f"… {step}"))
        except OnnxExportError as exc:
            raise CommandError(_("ONNX export failed: %(error)s. PyTorch will encode.") % {"error": exc})
        for line in onnx_spaces.describe_summary(summary):
            self.stdout.write(line)
        backend, _reason, _cosine = onnx_spaces.encoder_status(space)
        self.stdout.write(_("With the current settings the space is encoded by: %(backend)s") % {"backend": backend})

    def do_ensure_default(self, **opts):
        from search.services.default_space import ensure_default_space

        bar = tqdm(desc="embedding into the default space", unit="chunk", file=self.stdout)

        def progress(done, total):
            bar.total, bar.n = total, done
            bar.refresh()

        space = ensure_default_space(progress, prefer=opts.get("prefer"))
        bar.close()
        warning = space.model_card.get("warning")
        if warning:
            self.stderr.write(self.style.WARNING(warning))
        self.stdout.write(f"active space: {space}")

    def _backfill(self, space: EmbeddingSpace):
        bar = tqdm(desc=f"embedding into {space.name}", unit="chunk", file=self.stdout)

        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        embedding.backfill(space, progress)
        bar.close()
