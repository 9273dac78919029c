"""Synthetic (query, chunk) pairs: a pluggable generator writes queries a chunk
answers. `offline` needs no service; `http` asks an OpenAI-compatible chat
endpoint. A generator has `name`, `has_content(chunk)` and
`generate(chunk, n) -> [(query, query_type)]`."""
from __future__ import annotations

from typing import Callable, Iterable

from finetune.models import PairSource
from finetune.services.datasets.records import PairRecord
from finetune.services.datasets.synthetic.chat import ChatError, ChatGenerator
from finetune.services.datasets.synthetic.chunks import SourceChunk, metadata_chunks, portal_chunks, visible_chunks
from finetune.services.datasets.synthetic.offline import OfflineGenerator

GENERATORS = {"offline": OfflineGenerator, "http": ChatGenerator}

__all__ = ["GENERATORS", "ChatError", "ChatGenerator", "OfflineGenerator", "SourceChunk", "make_generator",
           "metadata_chunks", "portal_chunks", "synthetic_records", "visible_chunks"]


def make_generator(name: str, per_chunk: int = 3):
    if name not in GENERATORS:
        raise ValueError(f"unknown synthetic generator {name!r} (choose {', '.join(GENERATORS)})")
    return GENERATORS[name](per_chunk=per_chunk)


def synthetic_records(generator, chunks: Iterable[SourceChunk], *, per_chunk: int = 3, total: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> tuple[list[PairRecord], dict]:
    records: list[PairRecord] = []
    seen = skipped = 0
    for chunk in chunks:
        seen += 1
        queries = generator.generate(chunk, per_chunk) if generator.has_content(chunk) else []
        if not queries:
            skipped += 1
        for query, kind in queries:
            records.append(PairRecord(query=query, positive=chunk.passage, source=PairSource.SYNTHETIC,
                                      doc_key=chunk.doc_key, chunk_id=chunk.chunk_id, access_level=chunk.access_level,
                                      query_type=kind, domain=chunk.document_type))
        if progress:
            progress(seen, total or seen)
    report = {"source": str(PairSource.SYNTHETIC), "generator": generator.name, "chunks": seen,
              "chunks_without_queries": skipped, "pairs": len(records)}
    if hasattr(generator, "describe"):
        report.update(generator.describe())
    return records, report
