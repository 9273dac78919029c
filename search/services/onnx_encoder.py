"""ONNX Runtime encoders of a sentence-transformers folder, used only when their export
passed its fidelity check (search.services.model_import.onnx_export writes them).

An export lives in ``<model>/onnxruntime/<variant>/`` (variant ``fp32`` or ``int8``):
``model.onnx`` (the whole sentence-transformers pipeline — transformer, pooling,
dense layers, normalisation — taking the tokenizer's tensors and returning the
sentence embedding), the tokenizer files and ``export.json`` (the manifest: inputs,
max length, file hashes, the source model's fingerprint, the fidelity verdict and
probe vectors). :func:`load` refuses (``OnnxUnavailable``, with a reason code) an
export that is missing, failed its check, belongs to another version of the model
folder, or whose files or probe vectors do not match the manifest: the caller then
encodes with PyTorch. Plain Python: no Django import.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

ONNX_DIRNAME = "onnxruntime"
VARIANTS = ("fp32", "int8")
MANIFEST = "export.json"
FORMAT = 1
FIDELITY_MIN = 0.99  # cosine to the PyTorch model on every fidelity text (issue 12)
# Parts of a model folder that do not define its vectors: not in its fingerprint.
NOT_MODEL = {ONNX_DIRNAME, "model_card.json", "README.md", "__pycache__"}


class OnnxUnavailable(Exception):
    """Why an export cannot be used. ``code``: missing | failed | stale | corrupt."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def variant_dir(model_path: str | Path, variant: str) -> Path:
    return Path(model_path) / ONNX_DIRNAME / variant


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_fingerprint(model_path: str | Path) -> str:
    """The model folder's identity, cheap to compute at every load: each file's path, size
    and the hash of its first and last MiB (an export made from other weights — a folder
    replaced or fine-tuned in place — no longer matches). Copies keep it."""
    root = Path(model_path)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or rel.parts[0] in NOT_MODEL or any(p.startswith(".") for p in rel.parts):
            continue
        size = path.stat().st_size
        with open(path, "rb") as fh:
            edge = fh.read(1 << 20)
            if size > 2 << 20:
                fh.seek(size - (1 << 20))
                edge += fh.read(1 << 20)
        h.update(f"{rel.as_posix()}\0{size}\0".encode() + hashlib.sha256(edge).digest())
    return h.hexdigest()


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir() or not path.exists():
        raise OnnxUnavailable("missing", f"no ONNX export in {folder}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OnnxUnavailable("corrupt", f"{path} is unreadable ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise OnnxUnavailable("stale", f"{path} has format {manifest.get('format')!r}, expected {FORMAT}")
    return manifest


def inspect(model_path: str | Path, variant: str) -> tuple[str, dict | None]:
    """Without loading anything heavy: ("ok" | a reason code, the manifest or None)."""
    folder = variant_dir(model_path, variant)
    try:
        manifest = read_manifest(folder)
    except OnnxUnavailable as exc:
        return exc.code, None
    if not manifest.get("fidelity", {}).get("passed"):
        return "failed", manifest
    if manifest.get("source_fingerprint") != source_fingerprint(model_path):
        return "stale", manifest
    return "ok", manifest


class OnnxEncoder:
    """One ONNX Runtime session of an export, with its tokenizer; `threads` intra-op threads."""

    def __init__(self, folder: str | Path, manifest: dict, threads: int):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        self.variant = manifest.get("variant", self.folder.name)
        self.name = f"onnx-{self.variant}"
        self.inputs = list(manifest["inputs"])
        self.max_length = int(manifest["max_seq_length"])
        self.lower = bool(manifest.get("do_lower_case"))
        self.threads = threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.folder / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self.lower:
            texts = [t.lower() for t in texts]
        enc = self.tokenizer(texts, padding=True, truncation="longest_first", max_length=self.max_length,
                             return_tensors="np")
        return {name: np.asarray(enc[name], dtype=np.int64) for name in self.inputs}

    def encode(self, texts: list[str], batch_size: int = 32, normalize: bool = False) -> np.ndarray:
        """Vectors of `texts` (prompts already prepended), in order; batches of similar length."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start:start + batch_size]
            vectors = self.session.run(None, self.tokenize([texts[i] for i in idx]))[0]
            for i, v in zip(idx, vectors):
                out[i] = v
        vectors = np.asarray(np.stack(out), dtype=np.float32)
        if not np.all(np.isfinite(vectors)):
            raise ValueError("the ONNX model produced non-finite values")
        if normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


def load(model_path: str | Path, variant: str, threads: int) -> OnnxEncoder:
    """The export's encoder after every check: manifest and verdict, the model folder's
    fingerprint, every file's hash, and the probe texts' vectors recomputed here against
    the PyTorch vectors stored at export time. Raises OnnxUnavailable."""
    folder = variant_dir(model_path, variant)
    code, manifest = inspect(model_path, variant)
    if manifest is None:
        raise OnnxUnavailable(code, f"no usable ONNX export in {folder} ({code})")
    if code == "failed":
        fid = manifest.get("fidelity", {})
        raise OnnxUnavailable("failed", f"the {variant} export failed its fidelity check (min cosine "
                                        f"{fid.get('min_cosine')} < {fid.get('threshold', FIDELITY_MIN)})")
    if code == "stale":
        raise OnnxUnavailable("stale", f"the {variant} export was made from another version of {model_path}")
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise OnnxUnavailable("corrupt", f"{path} is missing")
        if file_sha256(path) != digest:
            raise OnnxUnavailable("corrupt", f"{path} does not match its recorded hash")
    try:
        encoder = OnnxEncoder(folder, manifest, threads)
        probe = manifest["probe"]
        got = encoder.encode(list(probe["texts"]), batch_size=len(probe["texts"]))
        worst = float(cosines(got, np.asarray(probe["vectors"], dtype=np.float32)).min())
    except Exception as exc:  # noqa: BLE001 - an unreadable graph, a tokenizer that will not load
        raise OnnxUnavailable("corrupt", f"the {variant} export does not run ({exc.__class__.__name__}: {exc})") \
            from None
    if not worst >= manifest.get("fidelity", {}).get("threshold", FIDELITY_MIN):
        raise OnnxUnavailable("corrupt", f"the {variant} export's probe vectors differ from PyTorch's here "
                                         f"(cosine {worst:.4f})")
    return encoder
