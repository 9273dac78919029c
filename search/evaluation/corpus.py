"""External benchmarks: a throwaway corpus built from a question/passage
dataset, evaluated in a scratch database (never the portal's documents). The
one loader of such datasets for the portal, its benchmarks and its tests.

Two formats (docs/evaluation.md, "External benchmarks"):

- **vicov19qa** (UIT-ViCoV19QA and any file shaped like it; research use only —
  read from its path, never copied into the repository): pipe-separated CSV,
  header `id|Question|Answer_1`, quoted multi-line answers. The split is read
  from the file name (`…_train.csv`, `…_val.csv`, `…_test.csv`; otherwise
  test). Every distinct answer is a passage. A question on several rows has
  every answer of those rows as relevant; a row with an empty question adds a
  distractor passage, relevant to nothing.
- **jsonl**: a corpus file, one `{"id", "text", "title"?}` a line, and one or
  more pairs files in the eval_pairs.jsonl shape, one `{"query", "doc_id" |
  "positive", "split"?}` a line: `doc_id` names corpus ids (one or a list),
  `positive` a passage's exact text; `split` defaults to the file name's split
  as above. A query on several lines has all their passages as relevant.

Questions are counted once however many rows they take.
"""
from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

FORMATS = ("vicov19qa", "jsonl")
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """The dataset cannot be read as the format says; the message says where."""


def default_dataset_path() -> Path:
    return Path(settings.BASE_DIR).parent / "shared" / "datasets" / "vicov19qa"


@dataclass
class QACorpus:
    passages: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    queries: dict[str, list[tuple[str, list[int]]]] = field(default_factory=dict)  # split → [(query, relevant)]
    files: list[str] = field(default_factory=list)
    distractors: int = 0

    def questions(self, split: str, limit: int | None = None) -> list[tuple[str, list[int]]]:
        found = self.queries.get(split, [])
        return found[:limit] if limit else found


def split_of(path: Path) -> str:
    stem = path.stem.lower()
    for split in SPLITS:
        if stem.endswith(split) or f"_{split}" in stem or f"-{split}" in stem:
            return split
    return "test"


def resolve_files(paths: list[str | Path], suffix: str = ".csv") -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(x for x in p.iterdir() if x.suffix.lower() == suffix)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(p)
    if not files:
        raise FileNotFoundError(f"no {suffix} file in {', '.join(map(str, paths))}")
    return list(dict.fromkeys(f.resolve() for f in files))


class _Builder:
    """Passages deduplicated by text; queries grouped per split, in first-seen order."""

    def __init__(self):
        self.corpus = QACorpus()
        self._index: dict[str, int] = {}
        self._queries: dict[str, dict[str, list[int]]] = {}

    def passage(self, text: str, title: str = "") -> int:
        if text not in self._index:
            self._index[text] = len(self.corpus.passages)
            self.corpus.passages.append(text)
            self.corpus.titles.append(title)
        return self._index[text]

    def relevant(self, split: str, query: str, passage: int) -> None:
        found = self._queries.setdefault(split, {}).setdefault(query, [])
        if passage not in found:
            found.append(passage)

    def done(self) -> QACorpus:
        used = {p for qs in self._queries.values() for ps in qs.values() for p in ps}
        self.corpus.distractors = len(self.corpus.passages) - len(used)
        self.corpus.queries = {s: list(qs.items()) for s, qs in self._queries.items()}
        return self.corpus


def load_vicov19qa(paths: list[str | Path]) -> QACorpus:
    csv.field_size_limit(10**8)
    build = _Builder()
    for path in resolve_files(paths):
        build.corpus.files.append(str(path))
        split = split_of(path)
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="|", quotechar='"')
            if not reader.fieldnames or not {"Question", "Answer_1"} <= set(reader.fieldnames):
                raise DatasetError(f"{path}: expected a header with Question and Answer_1 columns "
                                   f"(pipe-separated), found {reader.fieldnames}")
            for row in reader:
                answer = (row.get("Answer_1") or "").strip()
                question = (row.get("Question") or "").strip()
                if not answer:
                    continue
                idx = build.passage(answer)
                if question:
                    build.relevant(split, question, idx)
    return build.done()


def _jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: expected an object")
            yield number, record


def load_jsonl(pairs: list[str | Path], corpus_path: str | Path) -> QACorpus:
    build = _Builder()
    ids: dict[str, int] = {}
    corpus_path = Path(corpus_path)
    build.corpus.files.append(str(corpus_path.resolve()))
    for number, record in _jsonl(corpus_path):
        text = str(record.get("text") or "").strip()
        if "id" not in record or not text:
            raise DatasetError(f"{corpus_path}:{number}: a corpus line needs an id and a text")
        ids[str(record["id"])] = build.passage(text, str(record.get("title") or ""))
    by_text = {text: i for i, text in enumerate(build.corpus.passages)}
    for path in resolve_files(pairs, suffix=".jsonl"):
        build.corpus.files.append(str(path))
        for number, record in _jsonl(path):
            query = str(record.get("query") or "").strip()
            if not query:
                raise DatasetError(f"{path}:{number}: no query")
            wanted = record.get("doc_id", record.get("chunk_id"))
            wanted = wanted if isinstance(wanted, list) else [wanted] if wanted is not None else []
            found = [ids.get(str(w)) for w in wanted]
            if record.get("positive"):
                found.append(by_text.get(str(record["positive"]).strip()))
            if not found or None in found:
                raise DatasetError(f"{path}:{number}: its doc_id/positive names no passage of the corpus")
            for idx in found:
                build.relevant(str(record.get("split") or split_of(path)), query, idx)
    return build.done()


def build_documents(passages: list[str], prefix: str = "QA", titles: list[str] | None = None) -> list[int]:
    """One public ready document with one chunk per passage; returns the chunk
    ids (index-aligned with `passages`). Bulk-created: no ingestion signals fire."""
    from documents.models import Chunk, Document

    titles = titles or [""] * len(passages)
    docs = Document.objects.bulk_create([
        Document(code=f"{prefix}_{i}", title=titles[i] or f"{prefix} passage {i}", access_level=0, status="ready",
                 source_file=f"benchmark/{prefix.lower()}_{i}.txt", original_filename=f"{prefix.lower()}_{i}.txt",
                 file_size=len(a.encode()), checksum=hashlib.sha256(a.encode()).hexdigest(), content=a)
        for i, a in enumerate(passages)], batch_size=1000)
    chunks = Chunk.objects.bulk_create([
        Chunk(document=d, ordinal=0, text=a, token_count=len(a.split()), heading_path=[], char_start=0,
              char_end=len(a)) for d, a in zip(docs, passages)], batch_size=1000)
    return [c.pk for c in chunks]


def make_set(name: str, queries: list[tuple[str, list[int]]], chunk_ids: list[int]):
    from search.evaluation import sets
    from search.evaluation.models import EvaluationSet

    records = [{"query": q, "chunk_id": [chunk_ids[i] for i in relevant], "_line": n}
               for n, (q, relevant) in enumerate(queries, start=1)]
    return sets.import_records(name, records, replace=True, source=EvaluationSet.Source.BENCHMARK,
                               description=f"{len(queries)} questions, relevant = their passages")


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def vector_cache_path(model_path: str, passages: list[str]) -> Path:
    """Where a benchmark keeps a model's vectors of a corpus (var/bench-cache),
    keyed by the model's weight files and the passages."""
    weights = sorted(Path(model_path).rglob("*.safetensors")) or sorted(Path(model_path).rglob("*.bin"))
    model = _digest(str(Path(model_path).resolve()), *[(f.name, f.stat().st_size, f.stat().st_mtime_ns)
                                                      for f in weights])
    return Path(settings.VAR_DIR) / "bench-cache" / f"{model}-{_digest(*passages)}.npy"


def prepare_space(model_path: str, name: str = "benchmark", progress=None, *, passages: list[str] | None = None,
                  chunk_ids: list[int] | None = None):
    """Register the model in the scratch database and embed the corpus; returns
    (space, performance). With `passages` and `chunk_ids` (index-aligned), the
    vectors come from the benchmark cache when this model embedded this corpus
    before (then nothing is encoded and no throughput is claimed)."""
    import numpy as np

    from search.models import ChunkEmbedding
    from search.services import embedding, spaces
    from search.services.windows import needs_windows

    space = spaces.create_space(name, model_path)
    cache = vector_cache_path(model_path, passages) if passages is not None else None
    started = time.perf_counter()
    if cache is not None and (chunk_ids is None or needs_windows(space, chunk_ids)):
        cache = None  # one vector per chunk would be the truncated one (a cache older than windows)
    if cache is not None and cache.exists():
        vectors = np.load(cache)
        from documents.models import Chunk

        doc_of = dict(Chunk.objects.filter(pk__in=chunk_ids).values_list("pk", "document_id"))
        for start in range(0, len(chunk_ids), 500):
            embedding.write_vectors(space, [(c, doc_of[c], v) for c, v in
                                            zip(chunk_ids[start:start + 500], vectors[start:start + 500])])
        perf = {"corpus_passages": len(chunk_ids), "vectors_from_cache": str(cache)}
    else:
        n = embedding.backfill(space, progress=progress)
        seconds = time.perf_counter() - started
        perf = {"corpus_passages": n, "corpus_encode_s": round(seconds, 1),
                "encode_passages_per_s": round(n / seconds, 2) if seconds else None}
        if cache is not None:
            by_chunk = dict(ChunkEmbedding.objects.filter(space=space).values_list("chunk_id", "embedding"))
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, np.stack([np.asarray(by_chunk[c], dtype=np.float32) for c in chunk_ids]))
    space.refresh_from_db()
    perf["vectors"] = ChunkEmbedding.objects.filter(space=space).count()
    return space, perf
