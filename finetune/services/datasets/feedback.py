"""Pairs from search feedback (search.models SearchLog / Feedback).

For each logged search: a chunk voted helpful, or opened (a click) and not voted
unhelpful in that search, is a positive for the search's query; the chunks
voted unhelpful in the same search are its negatives, the best-ranked first (a
pair holds one; the others are counted as unused). A search with only unhelpful
votes gives no pair. The same query and chunk from several searches is one pair.

Access: only feedback on chunks of documents the building user may see
(`documents.selectors.visible_documents`) is read at all. Feedback whose chunk
is gone (the document was re-ingested since) has no text to train on: counted,
not used.
"""
from __future__ import annotations

from collections import defaultdict

from documents.selectors import visible_documents
from documents.services.chunking import embedding_text
from finetune.models import PairSource
from finetune.services.datasets.records import PairRecord
from finetune.services.texts import clean, near_key
from search.models import Feedback

HELPFUL, NOT_HELPFUL, CLICK = Feedback.Kind.HELPFUL, Feedback.Kind.NOT_HELPFUL, Feedback.Kind.CLICK


def feedback_records(user) -> tuple[list[PairRecord], dict]:
    visible = visible_documents(user)
    entries = (Feedback.objects.filter(document__in=visible)
               .select_related("search", "chunk", "chunk__document").order_by("search_id", "rank", "pk"))
    report = {"source": str(PairSource.FEEDBACK), "helpful": 0, "clicks": 0, "not_helpful": 0,
              "without_chunk": 0, "searches": 0, "unused_negatives": 0}
    by_search: dict[int, list[Feedback]] = defaultdict(list)
    for entry in entries.iterator(chunk_size=500):
        report[{HELPFUL: "helpful", NOT_HELPFUL: "not_helpful", CLICK: "clicks"}[entry.kind]] += 1
        if entry.chunk is None or entry.chunk.document_id != entry.document_id:
            report["without_chunk"] += 1
            continue
        by_search[entry.search_id].append(entry)

    records: dict[tuple[str, int], PairRecord] = {}
    for items in by_search.values():
        query = clean(items[0].search.query)
        if not query:
            continue
        report["searches"] += 1
        unhelpful = {e.document_id for e in items if e.kind == NOT_HELPFUL}
        negatives = sorted({e.chunk_id: e for e in items if e.kind == NOT_HELPFUL}.values(), key=lambda e: e.rank)
        clicked = [e for e in items if e.kind == CLICK and e.document_id not in unhelpful]
        positives = {e.chunk_id: e for e in clicked + [e for e in items if e.kind == HELPFUL]}  # a vote wins
        for entry in positives.values():
            chunk = entry.chunk
            candidates = [n for n in negatives if n.chunk_id != chunk.pk]
            key = (near_key(query), chunk.pk)
            known = records.get(key)
            if known is not None:
                if not known.negative and candidates:
                    known.negative = passage(candidates[0].chunk)
                continue
            records[key] = PairRecord(
                query=query, positive=passage(chunk), source=PairSource.FEEDBACK, doc_key=f"doc:{chunk.document_id}",
                negative=passage(candidates[0].chunk) if candidates else "", chunk_id=chunk.pk,
                access_level=chunk.document.access_level, query_type=str(entry.kind),
                domain=chunk.document.document_type)
            report["unused_negatives"] += max(0, len(candidates) - 1)
    report["pairs"] = len(records)
    report["negatives"] = sum(1 for r in records.values() if r.negative)
    return list(records.values()), report


def passage(chunk) -> str:
    """What the model reads for the chunk (heading line + text), as search embeds it."""
    return clean(embedding_text(chunk.text, chunk.heading_path))
