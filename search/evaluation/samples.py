"""The sample corpus's evaluation sets, imported once its documents are ready.

- `samples` (documents/samples/eval_pairs.jsonl, document level): the
  calibration set; bin/run calibrates the active space's floors and hybrid
  fusion on it.
- `samples-guard` (documents/samples/guard_pairs.jsonl, chunk level): the guard
  set. It is never trained on and never calibrated on: it tells whether a new or
  fine-tuned model got worse outside the data it was tuned with.

guard_pairs.jsonl lines are eval_pairs lines — `{"query", "positive"}`, the
positive a verbatim span of the answer passage, resolved to the chunk(s)
containing it — plus two keys the importer ignores: `document` (the code of the
document the answer is in: `check_declared_documents` verifies that the positive
resolved to chunks of that document only, so a chunking that splits the span or
a text that repeats it elsewhere is caught) and `kinds` (how the question is
asked: no_diacritics, abbreviation, english, keyword, question, paraphrase).

Idempotent: a set is kept while its file is unchanged and its chunks still
exist; otherwise it is imported again (chunk ids change when a document is
processed again).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from documents.models import Chunk
from search.evaluation import sets
from search.evaluation.models import EvaluationSet

CALIBRATION_SET = "samples"
GUARD_SET = "samples-guard"


@dataclass(frozen=True)
class SampleSet:
    name: str
    file: str
    role: str  # "calibration" | "guard"
    description: str


SAMPLE_SETS = (
    SampleSet(CALIBRATION_SET, "eval_pairs.jsonl", "calibration",
              "Sample corpus, calibration set (documents/samples/eval_pairs.jsonl, document level): bin/run "
              "calibrates the active space's relevance floors and hybrid fusion on it."),
    SampleSet(GUARD_SET, "guard_pairs.jsonl", "guard",
              "Sample corpus, guard set (documents/samples/guard_pairs.jsonl, chunk level): employee questions "
              "with and without diacritics, abbreviations, English words and answers in restricted documents. "
              "Never trained on and never calibrated on: it shows whether a new or fine-tuned model got worse "
              "outside its training data."),
)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_current(evaluation_set: EvaluationSet, digest: str) -> bool:
    """Same file, and every relevant chunk still exists."""
    if (evaluation_set.import_report or {}).get("sample_set", {}).get("sha256") != digest:
        return False
    findings = sets.validate(evaluation_set)
    return not findings["missing_chunks"] and not findings["unresolved"]


def check_declared_documents(evaluation_set: EvaluationSet, records: list[dict]) -> list[dict]:
    """Items whose `document` (declared in the file) is not exactly where their
    positive resolved: nothing found, or chunks of another document."""
    declared = {r["_line"]: r.get("document") for r in records if r.get("document")}
    items = [i for i in evaluation_set.items.order_by("pk") if i.line in declared]
    chunk_doc = dict(Chunk.objects.filter(pk__in={c for i in items for c in i.relevant_chunks})
                     .values_list("pk", "document__code"))
    problems = []
    for item in items:
        found = sorted({chunk_doc.get(c, "?") for c in item.relevant_chunks})
        if found != [declared[item.line]]:
            problems.append({"line": item.line, "query": item.query, "document": declared[item.line],
                             "resolved_to": found})
    return problems


def import_sample_sets(samples_dir: Path) -> list[str]:
    """Import (or keep) every sample set whose file exists; the lines to print."""
    lines = []
    for spec in SAMPLE_SETS:
        path = Path(samples_dir) / spec.file
        if not path.exists():
            continue
        digest = file_digest(path)
        existing = EvaluationSet.objects.filter(name=spec.name).first()
        if existing is not None and _is_current(existing, digest):
            lines.append(f"evaluation set {spec.name}: up to date ({existing.items.count()} questions)")
            continue
        with open(path, encoding="utf-8") as f:
            records, problems = sets.parse_lines(f)
        with transaction.atomic():  # the set with its marker, or the old one
            evaluation_set = sets.import_records(spec.name, records, problems=problems, replace=True,
                                                 description=spec.description)
            report = evaluation_set.import_report
            report["sample_set"] = {"file": spec.file, "sha256": digest, "role": spec.role}
            misplaced = check_declared_documents(evaluation_set, records)
            report["declared_document_mismatch"] = misplaced
            evaluation_set.save(update_fields=["import_report"])
        lines.append(f"evaluation set {spec.name}: imported {report['usable']} of {report['items']} questions "
                     f"({spec.role})")
        for key in ("problems", "unresolved", "duplicates"):
            if report.get(key):
                lines.append(f"  WARNING {key}: {len(report[key])} (see the set's import report in the admin)")
        if misplaced:
            lines.append(f"  WARNING {len(misplaced)} questions resolve outside their declared document, "
                         f"e.g. line {misplaced[0]['line']}: {misplaced[0]['query']!r} → {misplaced[0]['resolved_to']}")
    return lines
