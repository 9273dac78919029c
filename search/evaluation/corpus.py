"""External benchmarks: a throwaway corpus built from a question/answer file,
evaluated in a scratch database (never the portal's documents).

vicov19qa (UIT-ViCoV19QA, research use only — read from its path, never copied
into the repository): pipe-separated, header `id|Question|Answer_1`, quoted
multi-line answers. Corpus = every unique answer of the files given (train + val
+ test), one public ready document with one chunk each; queries = the test
questions; relevant = the question's answer (chunk level).
"""
from __future__ import annotations

import csv
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

FORMATS = ("vicov19qa",)
SPLITS = ("train", "val", "test")


def default_dataset_path() -> Path:
    return Path(settings.BASE_DIR).parent / "shared" / "datasets" / "vicov19qa"


@dataclass
class QACorpus:
    answers: list[str] = field(default_factory=list)
    queries: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # split → [(question, answer index)]
    files: list[str] = field(default_factory=list)


def _split_of(path: Path) -> str:
    stem = path.stem.lower()
    for split in SPLITS:
        if stem.endswith(split) or f"_{split}" in stem or f"-{split}" in stem:
            return split
    return "test"


def resolve_files(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(x for x in p.iterdir() if x.suffix.lower() == ".csv")
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(p)
    if not files:
        raise FileNotFoundError(f"no CSV file in {', '.join(map(str, paths))}")
    return list(dict.fromkeys(f.resolve() for f in files))


def load_vicov19qa(paths: list[str | Path]) -> QACorpus:
    csv.field_size_limit(10**8)
    corpus = QACorpus()
    index: dict[str, int] = {}
    for path in resolve_files(paths):
        corpus.files.append(str(path))
        split = _split_of(path)
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="|", quotechar='"'):
                answer = (row.get("Answer_1") or "").strip()
                question = (row.get("Question") or "").strip()
                if not answer:
                    continue
                idx = index.setdefault(answer, len(index))
                if question:
                    corpus.queries.setdefault(split, []).append((question, idx))
    corpus.answers = list(index)
    return corpus


def build_documents(answers: list[str], prefix: str = "QA") -> list[int]:
    """One public ready document with one chunk per answer; returns the chunk ids
    (index-aligned with `answers`). Bulk-created: no ingestion signals fire."""
    from documents.models import Chunk, Document

    docs = Document.objects.bulk_create([
        Document(code=f"{prefix}_{i}", title=f"{prefix} answer {i}", access_level=0, status="ready",
                 source_file=f"benchmark/{prefix.lower()}_{i}.txt", original_filename=f"{prefix.lower()}_{i}.txt",
                 file_size=len(a.encode()), checksum=hashlib.sha256(a.encode()).hexdigest(), content=a)
        for i, a in enumerate(answers)], batch_size=1000)
    chunks = Chunk.objects.bulk_create([
        Chunk(document=d, ordinal=0, text=a, token_count=len(a.split()), heading_path=[], char_start=0,
              char_end=len(a)) for d, a in zip(docs, answers)], batch_size=1000)
    return [c.pk for c in chunks]


def make_set(name: str, queries: list[tuple[str, int]], chunk_ids: list[int]):
    from search.evaluation import sets

    records = [{"query": q, "chunk_id": chunk_ids[i], "_line": n} for n, (q, i) in enumerate(queries, start=1)]
    from search.evaluation.models import EvaluationSet

    return sets.import_records(name, records, replace=True, source=EvaluationSet.Source.BENCHMARK,
                               description=f"{len(queries)} questions, relevant = their answer")


def prepare_space(model_path: str, name: str = "benchmark", progress=None):
    """Register the model in the scratch database and embed the corpus; returns
    (space, performance: backfill passages/s)."""
    from search.models import ChunkEmbedding
    from search.services import embedding, spaces

    space = spaces.create_space(name, model_path)
    started = time.perf_counter()
    n = embedding.backfill(space, progress=progress)
    seconds = time.perf_counter() - started
    space.refresh_from_db()
    return space, {"corpus_passages": n, "corpus_encode_s": round(seconds, 1),
                   "encode_passages_per_s": round(n / seconds, 2) if seconds else None,
                   "vectors": ChunkEmbedding.objects.filter(space=space).count()}
