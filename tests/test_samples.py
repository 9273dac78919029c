"""The sample corpus: its promised spread, its headings and titles as the
sources say, and `load_samples` ingesting all of it."""
import io
import json
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
from django.core.management import call_command

from documents.models import Chunk, Document, Tag
from documents.services import extraction

SAMPLES = Path(__file__).resolve().parent.parent / "documents" / "samples"
MANIFEST = {d["code"]: d for d in json.loads((SAMPLES / "manifest.json").read_text())["documents"]}
LIMITS = dict(max_bytes=50 * 1024 * 1024, max_unpacked=300 * 1024 * 1024, max_ratio=200)


def read_jsonl(path: Path) -> list[dict]:
    """Records of an eval_pairs-style file, each with its line number as `_line`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{**json.loads(line), "_line": n} for n, line in enumerate(lines, start=1) if line.strip()]


GUARD = read_jsonl(SAMPLES / "guard_pairs.jsonl")


@lru_cache(maxsize=None)
def extracted(code: str) -> extraction.ExtractedDocument:
    """The sample file extracted as the worker extracts it (cached: several tests read it)."""
    path = SAMPLES / "files" / MANIFEST[code]["file"]
    return extraction.extract(path, path.name, **LIMITS)


def source_headings(code: str) -> list[str]:
    """The headings the sample was written with (documents/samples/source/<code>.md)."""
    found, fenced = [], False
    for line in (SAMPLES / "source" / f"{code}.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif (match := re.match(r"^#{1,6}\s+(.*)$", line)) and not fenced:
            found.append(extraction.normalise(match.group(1)))
    return found


@pytest.mark.parametrize("code", sorted(MANIFEST))
def test_sample_headings_and_title_are_those_of_its_source(code):
    """No table cell ("8 giờ"), list item, wrapped line or company name is taken for a
    heading, and every heading of the source is found (the title heading of an HTML
    page sits in its <header>, which the parser leaves out)."""
    doc = extracted(code)
    title = MANIFEST[code]["title"]
    assert doc.title == title
    found = {h for section in doc.sections for h in section.heading_path}
    if MANIFEST[code]["file"].endswith(".xlsx"):
        return  # headings are the sheet names
    wanted = set(source_headings(code))
    assert found - {title} <= wanted, f"not headings in the source: {found - wanted - {title}}"
    assert wanted <= found, f"headings missed: {wanted - found}"


def test_manifest_spread():
    manifest = json.loads((SAMPLES / "manifest.json").read_text())
    docs = manifest["documents"]
    assert len(docs) >= 24
    types = Counter(d["document_type"] for d in docs)
    assert all(types[t] >= 6 for t in ("policy", "procedure", "technical_guide", "report")), types
    assert all(Counter(d["access_level"] for d in docs)[level] >= 1 for level in range(4))
    assert len({dept for d in docs for dept in d["departments"]}) >= 4
    formats = Counter(Path(d["file"]).suffix for d in docs)
    assert {".docx", ".pdf", ".html", ".md", ".txt", ".pptx", ".xlsx"} <= set(formats)
    langs = Counter(d["language"] for d in docs)
    assert langs["en"] >= 1 and langs["mixed"] >= 1
    for d in docs:
        assert (SAMPLES / "files" / d["file"]).exists(), d["file"]


@pytest.fixture(scope="module")
def loaded_samples(django_db_setup, django_db_blocker):
    """The whole sample corpus loaded and processed once for this module's
    database tests (each runs in its own transaction on top of it); what
    load_samples printed."""
    from documents.models import Department
    from search.evaluation.models import EvaluationSet

    out = io.StringIO()
    with django_db_blocker.unblock():
        call_command("load_samples", "--sync", stdout=out)
        yield out.getvalue()
        EvaluationSet.objects.all().delete()
        Document.objects.all().delete()
        while Tag.objects.exists():  # parents are protected: leaves first
            Tag.objects.filter(children__isnull=True).delete()
        Department.objects.all().delete()


@pytest.mark.django_db
def test_load_samples_ingests_everything_and_is_idempotent(loaded_samples):
    from search.evaluation.models import EvaluationSet

    manifest = json.loads((SAMPLES / "manifest.json").read_text())
    assert Document.objects.filter(status="ready").count() == len(manifest["documents"])
    assert not Document.objects.exclude(status="ready").exists()
    assert Chunk.objects.count() > len(manifest["documents"])
    assert Tag.objects.filter(parent__isnull=False).exists()
    leave = Document.objects.get(code="HR_POLICY_2024_001")
    assert leave.chunks.filter(text__contains="nghỉ phép").exists()
    sets_before = dict(EvaluationSet.objects.values_list("name", "pk"))
    out = io.StringIO()
    call_command("load_samples", "--sync", stdout=out)  # again: nothing new, the sets kept as they are
    assert Document.objects.count() == len(manifest["documents"])
    assert dict(EvaluationSet.objects.values_list("name", "pk")) == sets_before
    assert "evaluation set samples-guard: up to date" in out.getvalue()


@pytest.mark.django_db
def test_load_samples_imports_the_calibration_and_the_guard_set(loaded_samples):
    from search.evaluation.models import EvaluationSet

    calibration, guard = EvaluationSet.objects.get(name="samples"), EvaluationSet.objects.get(name="samples-guard")
    assert calibration.items.count() == len(read_jsonl(SAMPLES / "eval_pairs.jsonl"))
    assert all(i.level == "document" for i in calibration.items.all())
    assert guard.items.count() == len(GUARD) and all(i.level == "chunk" for i in guard.items.all())
    assert "Never trained on" in guard.description
    for evaluation_set, role in ((calibration, "calibration"), (guard, "guard")):
        report = evaluation_set.import_report
        assert report["sample_set"]["role"] == role
        assert report["usable"] == report["items"]
        assert not report["problems"] and not report["unresolved"] and not report["duplicates"]
        assert report["declared_document_mismatch"] == []
    assert f"evaluation set samples-guard: imported {len(GUARD)} of {len(GUARD)} questions (guard)" in loaded_samples


@pytest.mark.django_db
def test_every_guard_question_resolves_to_chunks_of_its_document(loaded_samples):
    """After the samples are processed (with this installation's chunking), each
    question's answer span is found in at least one chunk, and only in chunks of
    the document the question is about."""
    from search.evaluation.models import EvaluationSet

    guard = EvaluationSet.objects.get(name="samples-guard")
    declared = {r["_line"]: r["document"] for r in GUARD}
    chunk_doc = dict(Chunk.objects.values_list("pk", "document__code"))
    wrong = [(item.query, declared[item.line], sorted({chunk_doc.get(c) for c in item.relevant_chunks}))
             for item in guard.items.all()
             if not item.relevant_chunks or {chunk_doc.get(c) for c in item.relevant_chunks} != {declared[item.line]}]
    assert wrong == []
    covered = {chunk_doc[c] for item in guard.items.all() for c in item.relevant_chunks}
    assert covered == set(MANIFEST)


@pytest.mark.django_db
def test_a_stale_or_changed_sample_set_is_imported_again(loaded_samples):
    """Chunk ids change when a document is processed again, and the file may change:
    then load_samples imports the set again; a current set is kept."""
    from search.evaluation.models import EvaluationSet

    guard = EvaluationSet.objects.get(name="samples-guard")
    item = guard.items.order_by("pk").first()
    item.relevant_chunks = [10**12]  # a chunk that no longer exists
    item.save()
    calibration = EvaluationSet.objects.get(name="samples")
    calibration.import_report = {**calibration.import_report, "sample_set": {"sha256": "an older file"}}
    calibration.save()
    call_command("load_samples", "--sync", stdout=io.StringIO())
    new_guard = EvaluationSet.objects.get(name="samples-guard")
    new_calibration = EvaluationSet.objects.get(name="samples")
    assert new_guard.pk != guard.pk and new_calibration.pk != calibration.pk
    assert new_guard.items.get(line=item.line).relevant_chunks != [10**12]
    assert new_guard.items.get(line=item.line).relevant_chunks


@pytest.mark.django_db
def test_no_evaluation_set_is_imported_before_every_sample_is_ready(loaded_samples):
    from search.evaluation.models import EvaluationSet

    EvaluationSet.objects.all().delete()
    Document.objects.filter(code="IT_GUIDE_2024_001").update(status="processing")
    out = io.StringIO()
    call_command("load_samples", "--sync", stdout=out)
    assert not EvaluationSet.objects.exists()
    assert "Evaluation sets not imported: 1 sample documents are not ready (IT_GUIDE_2024_001)" in out.getvalue()


@pytest.fixture(scope="module")
def counter():
    from documents.services.tokens import default_model_path, token_counter

    return token_counter(str(default_model_path()))


@pytest.mark.parametrize("max_tokens, overlap", [(254, 48), (64, 16)], ids=["model-budget", "small-budget"])
@pytest.mark.parametrize("code", sorted(MANIFEST))
def test_sample_chunks_keep_every_invariant(code, counter, max_tokens, overlap):
    """Every sample, extracted as the worker does and chunked with the real tokenizer,
    at the model's budget and at a small one (so that sections split into several
    chunks): exact slices, within budget, no heading crossed, overlap within its
    limit, and every word of the text in some chunk (tests/chunk_invariants.py)."""
    from documents.services.chunking import chunk_sections
    from tests.chunk_invariants import check_chunks

    sections = extracted(code).sections
    content, chunks = chunk_sections(sections, counter.count, max_tokens=max_tokens, overlap=overlap)
    check_chunks(sections, content, chunks, counter.count, max_tokens=max_tokens, overlap=overlap)
    if max_tokens == 64:
        by_section = Counter(tuple(c.heading_path) for c in chunks)
        assert max(by_section.values()) > 2, "the small budget must split some section into 3+ chunks"


# --- the guard set (documents/samples/guard_pairs.jsonl) --------------------------------
# Each line declares how its question is asked (`kinds`); the checks below hold
# every declared kind to the question's text, so the counts asserted are real.

ABBREVIATIONS = {"bhxh", "nv", "cntt", "kpi", "hr", "pr", "po", "mr", "mfa", "sso", "otp", "sms", "hđ", "kh", "pccc",
                 "cab", "rfc", "sev1", "rpo", "rto", "erp", "crm", "bant", "mql", "sql", "poc", "tndn", "dlcn",
                 "hcm", "q1", "q2", "wfh", "k8s", "it", "aws"}
ENGLISH = {"budget", "deadline", "laptop", "cloud", "audit", "approve", "senior", "engineer", "certificate",
           "hybrid", "remote", "full", "setup", "core", "hours", "working", "remotely", "facebook", "buddy",
           "production", "test", "offer", "onboarding", "dev", "check", "reference", "form", "sales", "referral",
           "device", "compliant", "macbook", "wifi", "backup", "file", "deploy", "image", "tag", "latest",
           "prod", "release", "rollback", "liveness", "probe", "database", "canary", "traffic", "secret",
           "link", "password", "recovery", "code", "coverage", "feature", "branch", "review", "job", "admin",
           "account", "phishing", "virus", "win", "post", "incident", "uptime", "ticket", "service", "desk",
           "voucher", "gift", "card", "license", "open", "source", "server", "change", "window", "office",
           "services", "satisfaction", "lead", "stage", "negotiation", "excel", "margin", "managed", "rate",
           "learning", "e", "vpn"}
QUESTION_MARKERS = ["bao nhieu", "bao lau", "may", "gi", "nao", "ai", "o dau", "the nao", "ra sao", "lam sao",
                    "vi sao", "tai sao", "khi nao", "bao gio"]


def fold(text: str) -> str:
    """Without diacritics (đ → d), casefolded: how a query typed without them reads."""
    stripped = unicodedata.normalize("NFD", text.casefold()).replace("đ", "d")
    return "".join(c for c in stripped if unicodedata.category(c) != "Mn")


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


@lru_cache(maxsize=None)
def document_text(code: str) -> str:
    from search.evaluation.sets import normalise

    return normalise("\n".join(s.text for s in extracted(code).sections))


@lru_cache(maxsize=None)
def words_written_with_diacritics() -> frozenset:
    """Folded forms of the corpus's words that carry diacritics ("phu" for "phụ")."""
    return frozenset(fold(w) for code in MANIFEST for w in words(document_text(code)) if fold(w) != w)


def is_vietnamese_without_diacritics(query: str) -> bool:
    return query.isascii() and any(w in words_written_with_diacritics() for w in words(query))


def is_question(query: str) -> bool:
    tokens = words(fold(query))
    padded = f" {' '.join(tokens)} "
    return "?" in query or tokens[-1] == "khong" or any(f" {m} " in padded for m in QUESTION_MARKERS)


def abbreviations_in(query: str) -> set[str]:
    return {w for w in words(query) if w in ABBREVIATIONS}


def overlap_with_answer(record: dict) -> float:
    """Share of the query's (folded) words that the answer span also has."""
    query = set(words(fold(record["query"])))
    return len(query & set(words(fold(record["positive"])))) / len(query)


def by_kind(kind: str) -> list[dict]:
    return [r for r in GUARD if kind in r["kinds"]]


def test_guard_set_parses_and_covers_every_sample_document():
    from search.evaluation.sets import parse_lines, query_key

    records, problems = parse_lines((SAMPLES / "guard_pairs.jsonl").read_text(encoding="utf-8").splitlines())
    assert problems == [] and len(records) == len(GUARD) >= 80
    for r in GUARD:
        assert set(r) == {"query", "positive", "document", "kinds", "_line"}, r
        assert r["query"].strip() and r["positive"].strip() and r["document"] in MANIFEST, r
        assert unicodedata.normalize("NFC", r["query"] + r["positive"]) == r["query"] + r["positive"], r
        assert set(r["kinds"]) <= {"no_diacritics", "abbreviation", "english", "keyword", "question",
                                   "paraphrase"}, r
    per_document = Counter(r["document"] for r in GUARD)
    assert set(per_document) == set(MANIFEST) and min(per_document.values()) >= 2
    keys = [query_key(r["query"]) for r in GUARD]
    assert len(set(keys)) == len(keys), "a query twice"
    calibration = {query_key(r["query"]) for r in read_jsonl(SAMPLES / "eval_pairs.jsonl")}
    assert calibration.isdisjoint(keys), "the guard set repeats a question of the calibration set"


def test_guard_questions_are_asked_as_employees_ask_them():
    """Each declared kind holds for the question's text, and each is well represented."""
    for r in GUARD:
        kinds, query = set(r["kinds"]), r["query"]
        assert ("no_diacritics" in kinds) == is_vietnamese_without_diacritics(query), r
        assert ("abbreviation" in kinds) == bool(abbreviations_in(query)), r
        assert ("english" in kinds) == bool(set(words(query)) & ENGLISH), r
        assert ("question" in kinds) == is_question(query) != ("keyword" in kinds), r
        if "paraphrase" in kinds:
            assert overlap_with_answer(r) <= 0.5, r
    assert len(by_kind("no_diacritics")) >= 20
    assert len(by_kind("abbreviation")) >= 20
    # "BHXH" where the text says "bảo hiểm xã hội": the abbreviation is nowhere in the answer's document
    unwritten = [r for r in by_kind("abbreviation")
                 if abbreviations_in(r["query"]) - set(words(document_text(r["document"])))]
    assert len(unwritten) >= 10
    mixed = [r for r in by_kind("english") if not r["query"].isascii() or is_vietnamese_without_diacritics(r["query"])]
    assert len(mixed) >= 20, "English words inside Vietnamese questions"
    assert len(by_kind("paraphrase")) >= 20
    assert len(by_kind("question")) >= 30 and len(by_kind("keyword")) >= 30
    restricted = [r for r in GUARD if MANIFEST[r["document"]]["access_level"] >= 2]
    assert len(restricted) >= 30 and sum(MANIFEST[r["document"]]["access_level"] == 3 for r in restricted) >= 10


@pytest.mark.parametrize("max_tokens, overlap", [(254, 48), (505, 48), (128, 32)],
                         ids=["minilm-budget", "e5-budget", "small-budget"])
def test_guard_answers_survive_the_chunking_of_any_installation(counter, max_tokens, overlap):
    """Chunk ids differ between installations, so relevance is a span of the answer
    text: at the chunk budgets of all-MiniLM-L6-v2 and multilingual-e5-small (and a
    smaller one) it lies whole in a chunk of its document, and no other document has it."""
    from documents.services.chunking import chunk_sections
    from search.evaluation.sets import normalise

    chunks = {code: [normalise(c.text) for c in chunk_sections(extracted(code).sections, counter.count,
                                                                 max_tokens=max_tokens, overlap=overlap)[1]]
              for code in MANIFEST}
    for r in GUARD:
        span = normalise(r["positive"])
        assert any(span in text for text in chunks[r["document"]]), r
        assert [c for c in MANIFEST if c != r["document"] and span in document_text(c)] == [], r
