"""Token windows (issue 11, "a defect to fix on the way"): chunks are cut to the
active model's budget; a space whose model reads fewer tokens embeds a longer chunk
as overlapping windows that each fit its model, never truncated. Search returns
the chunk once, with its best window's score; counts are of chunks."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from documents.models import Chunk, Document
from documents.services.processing import current_chunking_policy, process_document
from documents.services.tokens import default_model_path, read_model_limits, token_counter
from search.models import ChunkEmbedding, SpaceStatus
from search.services import embedding, encoders, spaces
from search.services.filters import search_scope
from search.services.readiness import readiness
from search.services.results import run_search
from search.services.retrieval import vector_candidates
from search.services.windows import chunk_windows, passage_windows, window_spans
from tests import factories as f
from tests.migration_helpers import build_tiny_model, tiny_pair  # noqa: F401

WORDS = ["nghỉ", "phép", "năm", "quy", "định", "nhân", "viên", "lương", "VPN", "13/2023/NĐ-CP", "3.2",
         "100.000", "e-mail", "Đà", "Nẵng", "supercalifragilistic", "honey", "(RPO)", "—", "x"]
word = st.sampled_from(WORDS) | st.text(st.characters(categories=("L", "N", "P")), min_size=1, max_size=12)
text = st.builds(lambda words, seps: "".join(w + s for w, s in zip(words, seps)),
                 st.lists(word, min_size=1, max_size=300), st.lists(st.sampled_from([" ", "\n", "  ", ""]),
                                                                   min_size=300, max_size=300))


@pytest.fixture(scope="module")
def counter():
    return token_counter(str(default_model_path()))


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text, budget=st.integers(8, 80), overlap=st.integers(0, 40))
def test_windows_cover_the_text_and_each_fits_the_budget(counter, text, budget, overlap):
    spans = window_spans(text, counter, budget, overlap)
    windows = passage_windows(text, counter, budget, overlap)
    assert windows == [text[a:b] for a, b in spans]
    assert all(counter.count(w) <= budget for w in windows), "a window the model would truncate"
    for start, end in counter.token_spans(text):  # every token of the text is inside some window
        assert any(a <= start and end <= b for a, b in spans), (start, end, spans)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a1 < a2 and b1 < b2 for (a1, b1), (a2, b2) in zip(spans, spans[1:])), "windows move forward"
    if counter.count(text) <= budget:
        assert windows == [text]


def test_neighbouring_windows_overlap_and_do_not_cut_words(counter):
    text = " ".join(f"câu số {i} về nghỉ phép năm." for i in range(60))
    windows = passage_windows(text, counter, 40, overlap=10)
    assert len(windows) > 3
    for left, right in zip(windows, windows[1:]):
        assert left.split()[-3:] == right.split()[:3] or set(left.split()[-3:]) & set(right.split()[:6])
    words = set(text.split())
    assert all(set(w.split()) <= words for w in windows), "a window starts or ends inside a word"


# ---- the model's budget, read as sentence-transformers reads it -------------------------------------------------

def test_a_model_saved_by_sentence_transformers_reads_its_limit_from_the_tokenizer(tmp_path, minilm_path):
    """sentence-transformers 6 keeps max_seq_length only in tokenizer_config.json: a
    64-token model must not get 510-token chunks."""
    folder = build_tiny_model(tmp_path, minilm_path, 32, 64, 3)
    assert read_model_limits(__import__("pathlib").Path(folder)) == (64, "")
    assert token_counter(folder).room() == 62  # [CLS] and [SEP]
    assert encoders.describe_model(folder).max_seq_length == 64  # what the model itself reads


def test_a_chunk_from_a_64_token_model_fits_it(db, tmp_path, minilm_path, settings):
    folder = build_tiny_model(tmp_path, minilm_path, 32, 64, 4)
    settings.CHUNKING_MODEL_RESOLVER = None
    settings.EMBEDDING_MODEL = folder
    assert current_chunking_policy().max_tokens == 62


# ---- a space that reads fewer tokens than the chunks hold -------------------------------------------------------

RULES = " ".join(f"Rule {i}: staff keep the {thing} in the {place} and report any problem to the {team} team."
                 for i, (thing, place, team) in enumerate(
                     [(t, p, m) for t in ("keys", "laptops", "badges", "printers", "chairs")
                      for p, m in (("cabinet", "facilities"), ("storeroom", "security"), ("locker", "IT"),
                                   ("office", "finance"), ("hall", "reception"))]))
HONEY = "The rooftop beehives give the canteen fresh honey every summer."
HANDBOOK = f"# Office handbook\n\n## General rules\n\n{RULES} {HONEY}\n"
OTHERS = ["# VPN guide\n\n## Setup\n\nInstall the VPN client and sign in with your company account.\n",
          "# Leave policy\n\n## Annual leave\n\nEmployees get twelve days of paid annual leave each year.\n",
          "# Parking\n\n## Cars\n\nThe underground car park opens at seven in the morning.\n"]


@pytest.fixture(scope="session")
def long_reader_path(tmp_path_factory, minilm_path):
    """all-MiniLM-L6-v2 allowed to read 512 tokens (its position table has 512): the
    active model, whose chunks are twice what the 256-token original reads."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path, device="cpu")
    model.max_seq_length = 512
    path = tmp_path_factory.mktemp("long-reader")
    model.save(str(path))
    return str(path)


def root():
    from portal.models import User

    return User.objects.filter(username="root").first() or f.user("root", is_superuser=True)


def ready(text, level=1):
    doc = f.document(level, text=text, status="pending")
    assert process_document(doc.pk) == "ready"
    doc.refresh_from_db()
    return doc


@pytest.fixture
def two_spaces(db, long_reader_path, minilm_path):
    active = spaces.create_space("long-reader", long_reader_path)
    spaces.activate(active)
    handbook = ready(HANDBOOK)
    for text in OTHERS:
        ready(text)
    embedding.backfill(active)
    small = spaces.create_space("minilm-256", minilm_path, status=SpaceStatus.READY)
    embedding.backfill(small)
    return active, small, handbook


def long_chunk(doc) -> Chunk:
    chunk = doc.chunks.get()
    assert chunk.text.endswith(HONEY)
    return chunk


def test_a_long_chunk_gets_several_windows_in_the_small_space_and_one_in_the_active(two_spaces):
    active, small, handbook = two_spaces
    chunk = long_chunk(handbook)
    small_counter = token_counter(small.model_path)
    assert small_counter.count(chunk.text) > small_counter.room() + 100, "the chunk is longer than MiniLM reads"
    assert ChunkEmbedding.objects.filter(space=active, chunk=chunk).count() == 1
    windows = chunk_windows(small, chunk.text, chunk.heading_path)
    assert len(windows) >= 2
    assert all(small_counter.count(w) <= small_counter.room() for w in windows), "every window fits MiniLM"
    assert all(w.startswith("Office handbook > General rules\n") for w in windows), "each window keeps its heading"
    rows = ChunkEmbedding.objects.filter(space=small, chunk=chunk).order_by("window")
    assert [r.window for r in rows] == list(range(len(windows)))
    stored = np.stack([np.asarray(r.embedding) for r in rows])
    assert np.allclose(stored, encoders.encode_passages(small, windows), atol=1e-4), "the vectors are the windows'"


def test_counts_are_of_chunks_not_windows(two_spaces):
    active, small, handbook = two_spaces
    chunks = Chunk.objects.count()
    assert ChunkEmbedding.objects.filter(space=small).count() > chunks
    small.refresh_from_db()
    assert small.embedded_chunks == chunks == embedding.embedded_chunks(small)
    assert not embedding.missing_chunks(small).exists()
    assert embedding.document_progress(small, handbook.pk) is None, "nothing to wait for"
    assert readiness(root(), small).complete


def test_the_end_of_a_long_chunk_is_found_by_meaning_in_the_small_space(two_spaces):
    """A truncating model never sees the honey sentence; the small space finds the
    chunk by it, once, with the score of the window that holds it."""
    active, small, handbook = two_spaces
    chunk = long_chunk(handbook)
    query = "Where does the canteen get its honey?"
    scope = search_scope(root())
    found = vector_candidates(small, query, scope, limit=10)
    assert [c for c, _ in found].count(chunk.pk) == 1 and len({c for c, _ in found}) == len(found)
    assert found[0][0] == chunk.pk, found
    windows = chunk_windows(small, chunk.text, chunk.heading_path)
    qvec = encoders.encode_query(small, query)
    per_window = encoders.encode_passages(small, windows) @ qvec
    assert per_window.argmax() == len(windows) - 1, "the last window holds the honey sentence"
    assert found[0][1] == pytest.approx(float(per_window.max()), abs=1e-4), "the best window's score"
    truncated = float(encoders.encode_passages(small, [chunk.text])[0] @ qvec)  # what truncation would store
    assert found[0][1] > truncated + 0.05
    result = run_search(root(), query, mode="vector", space=small)
    hits = [h for h in result.hits if h.chunk.pk == chunk.pk]
    assert len(hits) == 1 and result.hits[0].chunk.pk == chunk.pk


def test_keyword_search_and_snippets_use_the_same_chunk_in_both_spaces(two_spaces):
    from search.services import keyword_index

    active, small, handbook = two_spaces
    chunk = long_chunk(handbook)
    keyword_index.rebuild()
    for space in (active, small):
        result = run_search(root(), "rooftop beehives honey", mode="keyword", space=space)
        assert result.hits and result.hits[0].chunk.pk == chunk.pk
        assert "honey" in result.hits[0].snippet


def test_windows_go_with_their_chunk(two_spaces):
    active, small, handbook = two_spaces
    chunk = long_chunk(handbook)
    Document.objects.filter(pk=handbook.pk).update(status="pending")
    assert process_document(handbook.pk) == "ready"  # re-ingested: new chunks, the old ones go
    assert not ChunkEmbedding.objects.filter(chunk_id=chunk.pk).exists()
    embedding.embed_document(small, handbook.pk)  # what the dual-write task does
    new = long_chunk(Document.objects.get(pk=handbook.pk))
    assert ChunkEmbedding.objects.filter(space=small, chunk=new).count() >= 2
    Document.objects.get(pk=handbook.pk).delete()
    assert not ChunkEmbedding.objects.filter(chunk_id=new.pk).exists()


def test_a_chunk_is_embedded_whole_or_not_at_all(two_spaces, monkeypatch):
    active, small, handbook = two_spaces
    chunk = long_chunk(handbook)
    ChunkEmbedding.objects.filter(space=small).delete()
    real, calls = embedding.vector_literal, []

    def fail_on_the_second_window(vector):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real(vector)

    monkeypatch.setattr(embedding, "vector_literal", fail_on_the_second_window)
    with pytest.raises(RuntimeError):
        embedding.embed_chunks(small, [chunk])
    assert not ChunkEmbedding.objects.filter(space=small, chunk=chunk).exists()
    monkeypatch.setattr(embedding, "vector_literal", real)
    assert list(embedding.missing_chunks(small)) and embedding.embed_chunks(small, [chunk]) == 1
    windows = len(chunk_windows(small, chunk.text, chunk.heading_path))
    assert ChunkEmbedding.objects.filter(space=small, chunk=chunk).count() == windows


def test_the_calibration_scores_a_chunk_by_its_best_window(two_spaces):
    from search.evaluation.floors import _similarities

    active, small, handbook = two_spaces
    chunk = long_chunk(handbook)
    query = "Where does the canteen get its honey?"
    sims = _similarities(small, query, [chunk.pk])
    assert len(sims) == 1
    scope = search_scope(root())
    assert sims[0] == pytest.approx(dict(vector_candidates(small, query, scope, 10))[chunk.pk], abs=1e-5)


# ---- the migration's writers ------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_migration_backfill_and_dual_write_write_every_window(tiny_pair, settings):
    """tiny_pair: the source reads 64 tokens (chunks of up to 62), the target 48."""
    from search.migration_models import MigrationState as S
    from search.services import space_migration as sm
    from tests.migration_helpers import drive, ready_document, vector_chunk_ids

    settings.MIGRATION_BATCH = 3
    settings.MIGRATION_STEP_SECONDS = 0
    source = spaces.create_space("source-48", tiny_pair[0])
    spaces.activate(source)
    for n in range(4):
        ready_document(n)
    embedding.backfill(source)
    target = spaces.create_space("target-32", tiny_pair[1], status=SpaceStatus.READY)
    migration = drive(sm.start(target, by="tester"))
    assert migration.state == S.EVALUATING, migration.error
    chunks = list(Chunk.objects.all())
    expected = {c.pk: len(chunk_windows(target, c.text, c.heading_path)) for c in chunks}
    assert max(expected.values()) >= 2, "some chunk is longer than the target reads"
    rows = ChunkEmbedding.objects.filter(space=target)
    assert {c: rows.filter(chunk_id=c).count() for c in expected} == expected
    assert migration.embedded_chunks == migration.total_chunks == len(chunks) == len(vector_chunk_ids(target))
    late = ready_document(77)  # uploaded after the walk: the dual-write embeds it in the target
    embedding.embed_document(target, late.pk)
    for c in late.chunks.all():
        assert rows.filter(chunk=c).count() == len(chunk_windows(target, c.text, c.heading_path))


def test_asking_whether_a_space_has_windows_reads_the_small_partial_index(two_spaces):
    from django.db import connection, transaction

    from search.services.retrieval import has_windows

    active, small, _ = two_spaces
    assert has_windows(small) and not has_windows(active)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute('EXPLAIN SELECT EXISTS (SELECT 1 FROM search_chunkembedding WHERE space_id = %s '
                    'AND "window" > 0)', [small.pk])
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "search_embedding_windowed" in plan, plan
