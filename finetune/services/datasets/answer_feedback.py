"""Pairs from answer feedback (answers.models.AnswerLog: the citations the
asker opened and their helpful / not helpful vote), read with search feedback
(`feedback`) — the asker's question is the query:

- positives: every cited chunk of an answer voted helpful, and a cited chunk
  the asker opened, unless they voted that answer unhelpful;
- negatives: the cited chunks of answers voted unhelpful, given to the
  positives of the same question (near-duplicate questions are one) — the
  first cited first, one a pair, the others counted as unused; a chunk that is
  a positive for the question is never its negative. An unhelpful answer with
  no positive for its question gives no pair, as a search with only
  unhelpful votes gives none.

Access, exactly as for search feedback: only citations of chunks of documents
the building user may see (`documents.selectors.visible_documents`) are read
at all. A cited chunk that is gone (the document was re-ingested since) has
no text to train on: counted, not used.
"""
from __future__ import annotations

from collections import defaultdict

from django.db.models import Q

from answers.models import AnswerLog
from documents.models import Chunk
from documents.selectors import visible_documents
from finetune.models import PairSource
from finetune.services.datasets.feedback import passage
from finetune.services.datasets.records import PairRecord
from finetune.services.texts import clean, near_key

HELPFUL, OPENED = "answer_helpful", "answer_opened"  # the pair's query_type


def answer_feedback_records(user) -> tuple[list[PairRecord], dict]:
    report = {"source": str(PairSource.FEEDBACK), "from": "answers", "answers": 0, "helpful": 0,
              "not_helpful": 0, "opened": 0, "without_chunk": 0, "unused_negatives": 0}
    logs = list(AnswerLog.objects.filter(Q(helpful__isnull=False) | ~Q(opened=[]))
                .exclude(citations=[]).order_by("created_at", "pk"))
    cited_ids = {c["chunk_id"] for log in logs for c in log.citations}
    cited_documents = {c["document_id"] for log in logs for c in log.citations}
    visible = set(visible_documents(user).filter(pk__in=cited_documents).values_list("pk", flat=True))
    chunks = {c.pk: c for c in Chunk.objects.filter(pk__in=cited_ids, document_id__in=visible)
              .select_related("document")}

    positives: dict[str, dict[int, tuple[Chunk, str, str]]] = defaultdict(dict)  # key → chunk id → (chunk, query, kind)
    negatives: dict[str, dict[int, Chunk]] = defaultdict(dict)
    for log in logs:
        readable = [c for c in log.citations if c["document_id"] in visible]  # nothing else is even counted
        if not readable or not (query := clean(log.question)):
            continue
        opened = {o["number"] for o in log.opened}
        report["answers"] += 1
        if log.helpful is True:
            report["helpful"] += 1
        elif log.helpful is False:
            report["not_helpful"] += 1
        report["opened"] += sum(1 for c in readable if c["number"] in opened)
        key = near_key(query)
        for citation in sorted(readable, key=lambda c: c["number"]):
            chunk = chunks.get(citation["chunk_id"])
            if chunk is None or chunk.document_id != citation["document_id"]:
                report["without_chunk"] += 1
                continue
            if log.helpful is False:
                negatives[key].setdefault(chunk.pk, chunk)
            elif log.helpful is True or citation["number"] in opened:
                kind = HELPFUL if log.helpful else OPENED
                known = positives[key].get(chunk.pk)
                if known is None or (known[2] == OPENED and kind == HELPFUL):  # a vote wins
                    positives[key][chunk.pk] = (chunk, query if known is None else known[1], kind)

    records = []
    for key, found in positives.items():
        candidates = [n for pk, n in negatives.get(key, {}).items() if pk not in found]
        for chunk, query, kind in found.values():
            records.append(PairRecord(
                query=query, positive=passage(chunk), source=PairSource.FEEDBACK, doc_key=f"doc:{chunk.document_id}",
                negative=passage(candidates[0]) if candidates else "", chunk_id=chunk.pk,
                access_level=chunk.document.access_level, query_type=kind, domain=chunk.document.document_type))
            report["unused_negatives"] += max(0, len(candidates) - 1)
    report["pairs"] = len(records)
    report["negatives"] = sum(1 for r in records if r.negative)
    return records, report
