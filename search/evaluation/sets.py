"""Evaluation sets: import from eval_pairs.jsonl, build from search feedback,
validate, export.

eval_pairs.jsonl: one JSON object a line, `{"query", "positive"?, "chunk_id"? |
"doc_id"?}` (chunk_id / doc_id may also be lists; `grade` / `grades` optional).
- `positive` is resolved to every chunk containing it after NFC and whitespace
  normalisation of both sides (several matches: all are relevant);
- `chunk_id` is a chunk's id, or "<document code>#<ordinal>";
- `doc_id` is a document code (document-level relevance).
Nothing is dropped silently: every line that cannot be used is in the report.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from django.db import transaction

from documents.models import Chunk, Document, DocumentStatus
from documents.services.text import nfc
from documents.selectors import visible_documents
from search.evaluation.models import EvaluationItem, EvaluationSet
from search.models import Feedback

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _SPACE.sub(" ", nfc(text or "")).strip()


def query_key(query: str) -> str:
    return normalise(query).casefold()


class PositiveResolver:
    """Finds the chunks (of ready documents) containing a text. The chunk texts
    are loaded and normalised once per import."""

    def __init__(self):
        self._texts: list[tuple[int, str]] | None = None

    def resolve(self, positive: str) -> list[int]:
        if self._texts is None:
            self._texts = [(pk, normalise(text)) for pk, text in
                           Chunk.objects.filter(document__status=DocumentStatus.READY).order_by("pk")
                           .values_list("pk", "text").iterator(chunk_size=2000)]
        needle = normalise(positive)
        return [pk for pk, text in self._texts if needle in text] if needle else []


def _as_list(value) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _resolve_chunk_ids(values: list) -> tuple[list[int], list]:
    ids, refs, missing = [], [], []
    for v in values:
        if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):
            ids.append(int(v))
        elif isinstance(v, str) and "#" in v:
            code, _, ordinal = v.rpartition("#")
            refs.append((v, code, ordinal))
        else:
            missing.append(v)
    found = set(Chunk.objects.filter(pk__in=ids).values_list("pk", flat=True))
    out = [i for i in ids if i in found]
    missing += [i for i in ids if i not in found]
    for ref, code, ordinal in refs:
        pk = Chunk.objects.filter(document__code=code, ordinal=int(ordinal) if ordinal.isdigit() else -1) \
            .values_list("pk", flat=True).first()
        (out.append(pk) if pk else missing.append(ref))
    return out, missing


def parse_lines(lines: Iterable[str]) -> tuple[list[dict], list[dict]]:
    """(records with their line numbers, problems)."""
    records, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as e:
            problems.append({"line": number, "problem": "invalid JSON", "detail": str(e)[:200]})
            continue
        record["_line"] = number
        records.append(record)
    return records, problems


@transaction.atomic
def import_records(name: str, records: list[dict], *, problems: list[dict] | None = None, replace: bool = False,
                   description: str = "", source: str = EvaluationSet.Source.JSONL, user=None) -> EvaluationSet:
    """Create (or replace) a set from parsed eval_pairs records; the import
    report (counts, unresolved, duplicates, empty queries) is stored on the set."""
    if replace:
        EvaluationSet.objects.filter(name=name).delete()
    evaluation_set = EvaluationSet.objects.create(name=name, description=description, source=source,
                                                  created_by=user if getattr(user, "pk", None) else None)
    report = {"lines": len(records) + len(problems or []), "problems": list(problems or []),
              "unresolved": [], "duplicates": [], "empty_queries": [], "multi_match": []}
    resolver = PositiveResolver()
    by_query: dict[str, EvaluationItem] = {}
    known_codes = None
    for record in records:
        line = record.get("_line")
        query = normalise(str(record.get("query") or ""))
        if not query:
            report["empty_queries"].append({"line": line})
            continue
        positive = str(record.get("positive") or "")
        chunk_ids, missing = _resolve_chunk_ids(_as_list(record.get("chunk_id")))
        doc_codes = [str(c) for c in _as_list(record.get("doc_id"))]
        if doc_codes:
            if known_codes is None:
                known_codes = set(Document.objects.values_list("code", flat=True))
            missing += [c for c in doc_codes if c not in known_codes]
            doc_codes = [c for c in doc_codes if c in known_codes]
        if not chunk_ids and not doc_codes and positive:
            chunk_ids = resolver.resolve(positive)
            if len(chunk_ids) > 1:
                report["multi_match"].append({"line": line, "query": query, "chunks": len(chunk_ids)})
        if missing:
            report["unresolved"].append({"line": line, "query": query, "missing": missing[:10]})
        elif not chunk_ids and not doc_codes:
            report["unresolved"].append({"line": line, "query": query,
                                         "positive": positive[:200], "reason": "positive matches no chunk"
                                         if positive else "no positive, chunk_id or doc_id"})
        grades = record.get("grades") or {}
        if "grade" in record:
            grades = {str(x): record["grade"] for x in (chunk_ids or doc_codes)}
        key = query_key(query)
        if key in by_query:  # a repeated query: its relevance joins the first occurrence
            first = by_query[key]
            report["duplicates"].append({"line": line, "query": query, "first_line": first.line})
            first.relevant_chunks = list(dict.fromkeys(first.relevant_chunks + chunk_ids))
            first.relevant_documents = list(dict.fromkeys(first.relevant_documents + doc_codes))
            first.grades = {**grades, **first.grades}
            continue
        by_query[key] = EvaluationItem(evaluation_set=evaluation_set, query=query[:1000], positive=positive,
                                       relevant_chunks=chunk_ids, relevant_documents=doc_codes,
                                       grades={str(k): v for k, v in grades.items()}, line=line)
    EvaluationItem.objects.bulk_create(by_query.values(), batch_size=1000)
    report["items"] = len(by_query)
    report["usable"] = sum(1 for i in by_query.values() if i.relevant_chunks or i.relevant_documents)
    evaluation_set.import_report = report
    evaluation_set.save(update_fields=["import_report"])
    return evaluation_set


def import_jsonl(name: str, path: str | Path, **kw) -> EvaluationSet:
    with open(path, encoding="utf-8") as f:
        records, problems = parse_lines(f)
    return import_records(name, records, problems=problems, **kw)


def export_records(evaluation_set: EvaluationSet) -> list[dict]:
    out = []
    for item in evaluation_set.items.order_by("pk"):
        record: dict = {"query": item.query}
        if item.positive:
            record["positive"] = item.positive
        if item.relevant_chunks:
            record["chunk_id"] = item.relevant_chunks[0] if len(item.relevant_chunks) == 1 else item.relevant_chunks
        elif item.relevant_documents:
            docs = item.relevant_documents
            record["doc_id"] = docs[0] if len(docs) == 1 else docs
        if item.grades:
            record["grades"] = item.grades
        out.append(record)
    return out


def export_jsonl(evaluation_set: EvaluationSet, path: str | Path) -> int:
    records = export_records(evaluation_set)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(records)


GRADE = {Feedback.Kind.HELPFUL: 2, Feedback.Kind.CLICK: 1}


@transaction.atomic
def build_from_feedback(name: str, *, level: str = "document", since=None, replace: bool = False,
                        user=None) -> EvaluationSet:
    """Helpful votes (grade 2) and clicks (grade 1) become relevant results of
    their query; a result voted not helpful more often than helpful is dropped.
    level "document" (default: results are shown per document) or "chunk"."""
    grade: dict[str, dict] = defaultdict(dict)
    balance: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    queries: dict[str, str] = {}
    qs = Feedback.objects.select_related("search", "document")
    if since:
        qs = qs.filter(created_at__gte=since)
    for fb in qs.order_by("pk"):
        query = normalise(fb.search.query)
        if not query:
            continue
        key = query_key(query)
        queries.setdefault(key, query)
        target = str(fb.chunk_id) if level == "chunk" and fb.chunk_id else fb.document.code
        if fb.kind == Feedback.Kind.NOT_HELPFUL:
            balance[key][target] -= 1
        else:
            grade[key][target] = max(grade[key].get(target, 0), GRADE[fb.kind])
            balance[key][target] += 1 if fb.kind == Feedback.Kind.HELPFUL else 0
    records = []
    for key, targets in grade.items():
        kept = {t: g for t, g in targets.items() if balance[key][t] >= 0}
        if not kept:
            continue
        chunks = [int(t) for t in kept if t.isdigit()] if level == "chunk" else []
        docs = [t for t in kept if not t.isdigit()] if not chunks else []
        records.append({"query": queries[key], "chunk_id": chunks or None, "doc_id": docs or None,
                        "grades": kept, "_line": None})
    return import_records(name, records, replace=replace, source=EvaluationSet.Source.FEEDBACK, user=user,
                          description=f"Built from search feedback ({level} level).")


def validate(evaluation_set: EvaluationSet, user=None) -> dict:
    """Findings: duplicate and empty queries, unresolved items, relevant chunks
    that no longer exist, relevant documents that are not ready or that `user`
    (None: anonymous) cannot see."""
    items = list(evaluation_set.items.order_by("pk"))
    seen: dict[str, int] = {}
    report = {"items": len(items), "duplicates": [], "empty_queries": [], "unresolved": [], "missing_chunks": [],
              "not_ready": [], "invisible": []}
    chunk_doc = dict(Chunk.objects.filter(pk__in={c for i in items for c in i.relevant_chunks})
                     .values_list("pk", "document__code"))
    codes = {c for i in items for c in i.relevant_documents} | set(chunk_doc.values())
    status = dict(Document.objects.filter(code__in=codes).values_list("code", "status"))
    visible = set(visible_documents(user, Document.objects.filter(code__in=codes)).values_list("code", flat=True))
    for item in items:
        key = query_key(item.query)
        if not key:
            report["empty_queries"].append(item.pk)
        elif key in seen:
            report["duplicates"].append({"item": item.pk, "query": item.query, "first": seen[key]})
        else:
            seen[key] = item.pk
        if item.level == "unresolved":
            report["unresolved"].append({"item": item.pk, "query": item.query})
            continue
        gone = [c for c in item.relevant_chunks if c not in chunk_doc]
        if gone:
            report["missing_chunks"].append({"item": item.pk, "query": item.query, "chunks": gone})
        docs = set(item.relevant_documents) | {chunk_doc[c] for c in item.relevant_chunks if c in chunk_doc}
        hidden = sorted(d for d in docs if d not in visible)
        if hidden:
            report["invisible"].append({"item": item.pk, "query": item.query, "documents": hidden})
        stale = sorted(d for d in docs if status.get(d, DocumentStatus.READY) != DocumentStatus.READY)
        if stale:
            report["not_ready"].append({"item": item.pk, "query": item.query, "documents": stale})
    report["ok"] = not any(report[k] for k in ("duplicates", "empty_queries", "unresolved", "missing_chunks",
                                                 "not_ready", "invisible"))
    return report
