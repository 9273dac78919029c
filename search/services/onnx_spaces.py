"""ONNX Runtime exports of the spaces' models: made on demand (`manage.py space onnx`),
at import (`manage.py import_model`, the default space's first import), recorded on
the space's model card, and what a process would encode a space with (admin)."""
from __future__ import annotations

import logging
from typing import Callable

from django.conf import settings
from django.utils.translation import gettext as _

from search.models import EmbeddingSpace
from search.services import encoders, onnx_encoder
from search.services.model_import.onnx_export import OnnxExportError, export_onnx, record_in_card

log = logging.getLogger(__name__)


def export_model(model_path: str, *, int8: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Export and check a model folder; the verdicts also go into its model_card.json (if
    it has one) and this process's encoders forget the folder's old sessions."""
    summary = export_onnx(model_path, int8=int8, progress=progress)
    record_in_card(model_path, summary)
    encoders.forget_onnx(model_path)
    return summary


def export_space(space: EmbeddingSpace, *, int8: bool = False,
                 progress: Callable[[str], None] | None = None) -> dict:
    summary = export_model(space.model_path, int8=int8, progress=progress)
    space.model_card = {**(space.model_card or {}), "onnx": summary}
    space.save(update_fields=["model_card"])
    return summary


def export_quietly(model_path: str, card: dict, *, int8: bool = False) -> dict:
    """At import: export, but a failure only logs a warning (PyTorch serves the model);
    returns the card with the verdicts (or the error) under "onnx"."""
    try:
        summary = export_model(model_path, int8=int8)
    except OnnxExportError as exc:
        log.warning("No ONNX export of %s (%s): PyTorch will encode with it.", model_path, exc)
        return {**card, "onnx": {"error": str(exc)}}
    return {**card, "onnx": summary}


def describe_summary(summary: dict) -> list[str]:
    """One line per variant of an export's verdicts, in the reader's language."""
    if "error" in summary:
        return [_("ONNX export failed: %(error)s. PyTorch will encode.") % {"error": summary["error"]}]
    lines = []
    for variant, result in summary.items():
        if result.get("passed"):
            lines.append(_("ONNX %(variant)s: passed (cosine to PyTorch min %(min).4f, mean %(mean).4f on %(texts)s "
                           "texts; %(size)s MB)") % {"variant": variant, "min": result["min_cosine"],
                                                     "mean": result["mean_cosine"], "texts": result["texts"],
                                                     "size": result["size_mb"]})
        else:
            lines.append(_("ONNX %(variant)s refused: %(reason)s. It will not be used.")
                         % {"variant": variant, "reason": result.get("refused", "?")})
    return lines


def encoder_status(space: EmbeddingSpace) -> tuple[str, str | None, float | None]:
    """What a process with these settings encodes the space with, from the files alone (no
    hashing, no session): ("torch" | "onnx-fp32" | "onnx-int8", the reason code when PyTorch
    is used — setting | missing | failed | stale | corrupt —, the export's min cosine)."""
    if settings.ENCODER_BACKEND == "torch":
        return "torch", "setting", None
    code = "missing"
    for variant in dict.fromkeys((settings.ENCODER_ONNX_VARIANT, "fp32")):
        found, manifest = onnx_encoder.inspect(space.model_path, variant)
        if found == "ok":
            return f"onnx-{variant}", None, manifest["fidelity"]["min_cosine"]
        if code == "missing":
            code = found
    return "torch", code, None
