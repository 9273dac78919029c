"""Chunks as the tantivy index holds them, read from PostgreSQL (the source of
truth): the chunk's text with its heading line (what the PostgreSQL index and
the embedding model read), the document's title, its access key (level, owner,
department ids, id) and its facets (type, tags with their ancestors, language,
effective date). Only chunks of ready documents are indexed."""
from __future__ import annotations

from typing import Iterator

import tantivy
from django.db import connection

from documents.services.chunking import embedding_text
from search.services.keyword_engine.analysis import folded_tokens, index_fields
from search.services.keyword_engine.store import NO_OWNER

_SELECT = """
    SELECT c.id, c.document_id, c.text, c.heading_path, d.title, d.access_level, d.owner_id,
           d.document_type, d.language, d.effective_date,
           coalesce((SELECT array_agg(dd.department_id) FROM documents_document_departments dd
                     WHERE dd.document_id = d.id), '{}'),
           coalesce((SELECT array_agg(dt.tag_id) FROM documents_document_tags dt
                     WHERE dt.document_id = d.id), '{}')
    FROM documents_chunk c JOIN documents_document d ON d.id = c.document_id
    WHERE d.status = 'ready' AND """


def _tag_parents(cur) -> dict[int, int | None]:
    cur.execute("SELECT id, parent_id FROM documents_tag")
    return dict(cur.fetchall())


def _with_ancestors(tag_ids, parents: dict[int, int | None]) -> list[int]:
    out: set[int] = set()
    for pk in tag_ids:
        while pk is not None and pk not in out:
            out.add(pk)
            pk = parents.get(pk)
    return sorted(out)


def _document(row, parents, titles: dict) -> tantivy.Document:
    (chunk_id, doc_id, text, heading_path, title, level, owner, doc_type, language, effective, depts, tags) = row
    exact, folded = index_fields(embedding_text(text, heading_path))
    if doc_id not in titles:
        titles[doc_id] = folded_tokens(title)
    fields = {"chunk_id": chunk_id, "document_id": doc_id, "text": exact, "folded": folded,
              "title": titles[doc_id], "access_level": int(level), "owner_id": owner or NO_OWNER,
              "department_ids": sorted(depts), "tag_ids": _with_ancestors(tags, parents),
              "document_type": doc_type, "language": language}
    if effective is not None:
        fields["effective_day"] = effective.toordinal()
    return tantivy.Document(**fields)


def chunks_of(document_ids: list[int]) -> list[tantivy.Document]:
    """The index documents of these documents' chunks (none for a document that
    is gone or not ready)."""
    if not document_ids:
        return []
    with connection.cursor() as cur:
        parents = _tag_parents(cur)
        cur.execute(_SELECT + "d.id = ANY(%s) ORDER BY c.id", [list(document_ids)])
        titles: dict = {}
        return [_document(row, parents, titles) for row in cur.fetchall()]


def all_chunks(batch: int = 2000) -> Iterator[list[tantivy.Document]]:
    """Every indexed chunk, in keyset batches (the caller's transaction decides
    the snapshot)."""
    last = 0
    with connection.cursor() as cur:
        parents = _tag_parents(cur)
        titles: dict = {}
        while True:
            cur.execute(_SELECT + "c.id > %s ORDER BY c.id LIMIT %s", [last, batch])
            rows = cur.fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [_document(row, parents, titles) for row in rows]


def count_indexable() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM documents_chunk c JOIN documents_document d ON d.id = c.document_id "
                    "WHERE d.status = 'ready'")
        return cur.fetchone()[0]
