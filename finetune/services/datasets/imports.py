"""Imported files in the formats of DESIGN.md ("Data formats"):

- `positive_pairs.jsonl`: `{"query", "positive", "query_type"?, "domain"?}`
- `hard_negatives.jsonl`: `{"query", "positive", "hard_negative", "negative_score"?}`
- `document_metadata.json`: `{"documents": [{"doc_id", "title", "department",
  "access_level", "document_type", "tags", "chunks": [{"chunk_id", "text", "keywords"}]}]}`

A file with any malformed line is refused whole, every problem listed with its
line number (or JSON path): training on the part of a file that happened to
parse would hide the rest silently. Blank lines are allowed. Fields the format
does not name are counted in the source's report, not used.

The document of an imported pair (its split unit): the metadata document whose
chunk the positive is — the same text after `clean`, or failing that the same
`near_key` — or, for a positive of 20 characters or more, the one metadata
document whose chunks contain it. Otherwise (no metadata, no match, or several
documents contain it) the document is unknown and the pair's doc key is the
positive's own hash (`passage_key`), so every pair of that passage stays on one
side of the split.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from finetune.models import PairSource
from finetune.services.datasets.records import PairRecord, SourceError, SourceFile
from finetune.services.texts import clean, near_key, passage_key

PAIR_FIELDS = {"query", "positive", "query_type", "domain"}
NEGATIVE_FIELDS = {"query", "positive", "hard_negative", "negative_score"}
MIN_CONTAINED = 20  # shorter positives are not matched by containment (too many false matches)


def _json_lines(source: SourceFile, problems: list[str]):
    for number, line in enumerate(source.text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            problems.append(_("line %(line)d: not valid JSON (%(error)s, column %(column)d)")
                            % {"line": number, "error": exc.msg, "column": exc.colno})
            continue
        if not isinstance(record, dict):
            problems.append(_("line %(line)d: expected a JSON object, found %(type)s")
                            % {"line": number, "type": type(record).__name__})
            continue
        yield number, record


def _text(record: dict, key: str, number: int, problems: list[str], required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        problems.append(_('line %(line)d: "%(field)s" is missing or not a string') % {"line": number, "field": key})
        return ""
    if required and not clean(value):
        problems.append(_('line %(line)d: "%(field)s" is empty') % {"line": number, "field": key})
    return clean(value)


def _label(record: dict, key: str, number: int, problems: list[str]) -> str:
    value = _text(record, key, number, problems, required=False)
    if len(value) > 50:
        problems.append(_('line %(line)d: "%(field)s" is longer than 50 characters') % {"line": number, "field": key})
    return value


@dataclass
class ImportedPairs:
    records: list[PairRecord]
    report: dict


def parse_pairs(source: SourceFile, *, negatives: bool) -> ImportedPairs:
    """positive_pairs.jsonl (negatives=False) or hard_negatives.jsonl (True)."""
    kind = PairSource.NEGATIVES if negatives else PairSource.PAIRS
    known = NEGATIVE_FIELDS if negatives else PAIR_FIELDS
    problems: list[str] = []
    records: list[PairRecord] = []
    ignored: Counter = Counter()
    for number, record in _json_lines(source, problems):
        before = len(problems)
        query = _text(record, "query", number, problems)
        positive = _text(record, "positive", number, problems)
        pair = PairRecord(query=query, positive=positive, source=kind, doc_key=passage_key(positive), line=number)
        if negatives:
            pair.negative = _text(record, "hard_negative", number, problems)
            score = record.get("negative_score")
            if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
                problems.append(_('line %(line)d: "%(field)s" is not a number') % {"line": number, "field": "negative_score"})
            else:
                pair.negative_score = float(score) if score is not None else None
            if pair.negative and near_key(pair.negative) == near_key(positive):
                problems.append(_("line %(line)d: the hard negative is the positive itself") % {"line": number})
        else:
            pair.query_type = _label(record, "query_type", number, problems)
            pair.domain = _label(record, "domain", number, problems)
        ignored.update(k for k in record if k not in known)
        if len(problems) == before:
            records.append(pair)
    if not records and not problems:
        problems.append(_("no pairs in the file"))
    if problems:
        raise SourceError(source.name, problems)
    return ImportedPairs(records, {"source": str(kind), "file": source.name, "pairs": len(records),
                                   "ignored_fields": dict(ignored)})


@dataclass
class MetadataChunk:
    chunk_id: str
    text: str
    keywords: list[str]
    ordinal: int


@dataclass
class MetadataDocument:
    doc_id: str
    title: str
    department: str
    access_level: int
    document_type: str
    tags: list[str]
    chunks: list[MetadataChunk] = field(default_factory=list)

    @property
    def doc_key(self) -> str:
        return f"meta:{self.doc_id}"


def _strings(value, where: str, problems: list[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(_("%(where)s: expected a list of strings") % {"where": where})
        return []
    return [clean(v) for v in value if clean(v)]


def _meta_document(i: int, doc, seen: set, problems: list[str]) -> MetadataDocument | None:
    where = f"documents[{i}]"
    if not isinstance(doc, dict):
        problems.append(_("%(where)s: expected an object") % {"where": where})
        return None
    before = len(problems)
    doc_id = doc.get("doc_id")
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or not str(doc_id).strip():
        problems.append(_('%(where)s: "doc_id" is missing') % {"where": where})
    elif str(doc_id).strip() in seen:
        problems.append(_('%(where)s: "doc_id" %(id)s appears twice') % {"where": where, "id": repr(doc_id)})
    level = doc.get("access_level")
    if isinstance(level, bool) or level not in (0, 1, 2, 3):
        problems.append(_('%(where)s: "access_level" must be 0, 1, 2 or 3') % {"where": where})
    for key in ("title", "department", "document_type"):
        if doc.get(key) is not None and not isinstance(doc.get(key), str):
            problems.append(_('%(where)s: "%(field)s" is not a string') % {"where": where, "field": key})
    result = MetadataDocument(str(doc_id).strip(), clean(str(doc.get("title") or "")),
                              clean(str(doc.get("department") or "")), level if level in (0, 1, 2, 3) else 0,
                              clean(str(doc.get("document_type") or "")), _strings(doc.get("tags"), where, problems))
    chunks = doc.get("chunks")
    if not isinstance(chunks, list) or not chunks:
        problems.append(_('%(where)s: "chunks" must be a non-empty list') % {"where": where})
        chunks = []
    chunk_ids: set = set()
    for j, chunk in enumerate(chunks):
        at = f"{where}.chunks[{j}]"
        if not isinstance(chunk, dict):
            problems.append(_("%(where)s: expected an object") % {"where": at})
            continue
        text = chunk.get("text")
        if not isinstance(text, str) or not clean(text):
            problems.append(_('%(where)s: "text" is missing or empty') % {"where": at})
            continue
        chunk_id = str(chunk.get("chunk_id", j))
        if chunk_id in chunk_ids:
            problems.append(_('%(where)s: "chunk_id" %(id)s appears twice in the document')
                            % {"where": at, "id": repr(chunk_id)})
        chunk_ids.add(chunk_id)
        result.chunks.append(MetadataChunk(chunk_id, clean(text), _strings(chunk.get("keywords"), at, problems), j))
    if len(problems) > before:
        return None
    seen.add(result.doc_id)
    return result


def parse_metadata(source: SourceFile) -> list[MetadataDocument]:
    try:
        data = json.loads(source.text())
    except ValueError as exc:
        raise SourceError(source.name, [_("not valid JSON (line %(line)d, column %(column)d: %(error)s)") % {
            "line": exc.lineno, "column": exc.colno, "error": exc.msg}]) from None
    if not isinstance(data, dict) or not isinstance(data.get("documents"), list):
        raise SourceError(source.name, [_('expected an object with a "documents" list')])
    problems: list[str] = []
    seen: set = set()
    documents = [d for i, doc in enumerate(data["documents"]) if (d := _meta_document(i, doc, seen, problems))]
    if not documents and not problems:
        problems.append(_("no documents in the file"))
    if problems:
        raise SourceError(source.name, problems)
    return documents


class MetadataIndex:
    """Finds the metadata document a positive was taken from (module docstring)."""

    def __init__(self, documents: list[MetadataDocument]):
        self.documents = documents
        self._exact: dict[str, MetadataDocument | None] = {}
        self._near: dict[str, MetadataDocument | None] = {}
        for doc in documents:
            for chunk in doc.chunks:
                for table, key in ((self._exact, chunk.text), (self._near, near_key(chunk.text))):
                    table[key] = doc if table.get(key, doc) is doc else None  # None: in two documents
        self._joined = [(doc, "\n".join(c.text for c in doc.chunks)) for doc in documents]

    def find(self, positive: str) -> MetadataDocument | None:
        for table, key in ((self._exact, positive), (self._near, near_key(positive))):
            if key in table:
                return table[key]
        if len(positive) >= MIN_CONTAINED:
            found = [doc for doc, text in self._joined if positive in text]
            if len(found) == 1:
                return found[0]
        return None


def attach_metadata(records: list[PairRecord], index: MetadataIndex) -> int:
    """Give imported pairs their metadata document; returns how many matched."""
    matched = 0
    for pair in records:
        doc = index.find(pair.positive)
        if doc is not None:
            pair.doc_key, pair.access_level = doc.doc_key, doc.access_level
            pair.domain = pair.domain or doc.document_type
            matched += 1
    return matched
