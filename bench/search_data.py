"""Synthetic-but-realistic data for bench/search.py.

Texts: the real UIT-ViCoV19QA texts (research use only; read from ../shared,
never copied into the repository): every unique answer plus the train/val
questions are the "base" passages; the test questions are the queries.

Vectors: each base passage is embedded once with the space's model (cached in
var/bench/*.npy); the corpus grows to N rows by low-rank perturbation of those
vectors,  v' = normalize(v + scale · U z / √r)  with U a fixed random
orthonormal 384×r basis and z ~ N(0, I_r) per row — embeddings that cluster like
real ones (uniform random vectors are HNSW's worst case, STACK-NOTES). Row i
uses base passage i mod B, and its chunk text is that same passage, so keyword
and vector search look at consistent data.

Everything is deterministic in (seed, N, base cache): a rerun with --reuse
regenerates exactly the vectors that are in the database.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared/datasets/vicov19qa"

CHUNKS_PER_DOCUMENT = 10
ACCESS_LEVELS = (0, 1, 2, 3)
ACCESS_SHARES = (0.30, 0.45, 0.20, 0.05)  # public, internal, restricted, confidential
DEPARTMENTS = 6
DEPARTMENT_SHARES = (0.10,) + (0.18,) * 5  # department 0 owns 10% of the documents
RANK, SCALE = 16, 0.3


def load_vicov() -> tuple[list[str], list[str]]:
    """(base passages: the unique answers, then the train and val questions; test questions),
    read with the portal's one loader (search.evaluation.corpus)."""
    from search.evaluation.corpus import load_vicov19qa

    data = load_vicov19qa([DATA])
    passages = dict.fromkeys(" ".join(p.split()) for p in data.passages)
    passages.update(dict.fromkeys(" ".join(q.split()) for split in ("train", "val") for q, _ in data.questions(split)))
    return list(passages), [" ".join(q.split()) for q, _ in data.questions("test")]


def base_vectors(encoder_space, texts: list[str], cache_dir: Path, log=print) -> np.ndarray:
    """Embeddings of `texts` with the space's model and passage prompt (cached)."""
    key = hashlib.sha256(("\x00".join([Path(encoder_space.model_path).name, encoder_space.passage_prefix,
                                        str(encoder_space.normalize)] + texts)).encode()).hexdigest()[:16]
    path = cache_dir / f"search-base-{key}.npy"
    if path.exists():
        vectors = np.load(path)
        log(f"base vectors: {vectors.shape} from cache {path}")
        return vectors
    from search.services import encoders

    encoders.use_query_threads(2)
    cache_dir.mkdir(parents=True, exist_ok=True)
    import time

    started = time.perf_counter()
    parts = []
    step = 512
    for i in range(0, len(texts), step):
        parts.append(encoders.encode_passages(encoder_space, texts[i:i + step]))
        log(f"  embedded {min(i + step, len(texts))}/{len(texts)} base passages "
            f"({time.perf_counter() - started:.0f} s)")
    vectors = np.concatenate(parts).astype(np.float32)
    np.save(path, vectors)
    log(f"base vectors: {vectors.shape} embedded in {time.perf_counter() - started:.1f} s → {path}")
    return vectors


def grow(base: np.ndarray, n: int, seed: int, rank: int = RANK, scale: float = SCALE,
         block: int = 50_000) -> np.ndarray:
    """N unit vectors: row i = normalize(base[i mod B] + scale · U z_i / √rank)."""
    b, d = base.shape
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((d, rank)))  # fixed orthonormal basis
    u = u.astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        z = rng.standard_normal((stop - start, rank)).astype(np.float32)
        v = base[np.arange(start, stop) % b] + (scale / np.sqrt(rank)) * (z @ u.T)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[start:stop] = v
    return out


def document_attributes(n_docs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(access level, department index) per document (index 0 = document id 1)."""
    rng = np.random.default_rng(seed + 1)
    access = rng.choice(ACCESS_LEVELS, size=n_docs, p=ACCESS_SHARES).astype(np.int16)
    department = rng.choice(DEPARTMENTS, size=n_docs, p=DEPARTMENT_SHARES).astype(np.int16)
    return access, department


def embedding_copy_rows(dim: int) -> np.dtype:
    """One row of `COPY search_chunkembedding (id, chunk_id, space_id, document_id,
    embedding) FROM STDIN (FORMAT BINARY)`: field count, then (length, value) per
    field; a pgvector value is int16 dim, int16 0, float4[dim], all big-endian."""
    return np.dtype([("nfields", ">i2"),
                     ("l_id", ">i4"), ("id", ">i8"),
                     ("l_chunk", ">i4"), ("chunk", ">i8"),
                     ("l_space", ">i4"), ("space", ">i8"),
                     ("l_doc", ">i4"), ("doc", ">i8"),
                     ("l_vec", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", (dim,))])


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def embedding_copy_block(vectors: np.ndarray, start: int, space_id: int, id_offset: int = 0) -> bytes:
    """Binary COPY rows for chunk ids start+1 … start+len(vectors) (row ids shifted
    by `id_offset`, for a second space's rows of the same chunks)."""
    n, dim = vectors.shape
    rows = np.zeros(n, dtype=embedding_copy_rows(dim))
    ids = np.arange(start + 1, start + n + 1, dtype=np.int64)
    rows["nfields"] = 5
    rows["l_id"] = rows["l_chunk"] = rows["l_space"] = rows["l_doc"] = 8
    rows["id"] = ids + id_offset
    rows["chunk"] = ids
    rows["space"] = space_id
    rows["doc"] = (ids - 1) // CHUNKS_PER_DOCUMENT + 1
    rows["l_vec"] = 4 + 4 * dim
    rows["dim"] = dim
    rows["vec"] = vectors
    return rows.tobytes()


def distinct_compositions(n: int, seed: int, sentences_per_chunk: tuple[int, int] = (3, 9)
                          ) -> tuple[list[str], list[tuple[int, ...]]]:
    """(the sentence pool, N distinct tuples of sentence indices): chunk i is
    the pool's sentences of tuple i joined by spaces (distinct_texts)."""
    import random
    import re

    passages, questions = load_vicov()
    sentences = list(dict.fromkeys(s.strip() for p in passages + questions
                                   for s in re.split(r"(?<=[.!?])\s+", p) if len(s.split()) >= 3))
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[int, ...]] = []
    lo, hi = sentences_per_chunk
    population = range(len(sentences))
    while len(out) < n:
        parts = tuple(rng.sample(population, rng.randint(lo, hi)))
        if parts not in seen:
            seen.add(parts)
            out.append(parts)
    return sentences, out


def distinct_texts(n: int, seed: int, sentences_per_chunk: tuple[int, int] = (3, 9)) -> list[str]:
    """N chunk texts, all different: 3–9 real vicov19qa sentences recombined at
    random (seeded), so term statistics and lengths look like real text and no
    text is repeated (a repeated text would let a cache or a tie flatter a figure)."""
    sentences, parts = distinct_compositions(n, seed, sentences_per_chunk)
    texts = list(dict.fromkeys(" ".join(sentences[i] for i in p) for p in parts))
    assert len(texts) == n, "two compositions gave the same text"
    return texts
