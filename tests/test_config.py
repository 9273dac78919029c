"""Typed settings: bad values fail `manage.py check` loudly; good ones parse."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal import config

ROOT = Path(__file__).resolve().parent.parent


def run_check(**env):
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@pytest.mark.parametrize("name,value,reason", [
    ("PORTAL_UPLOAD_MAX_BYTES", "lots", "invalid literal"),
    ("PORTAL_CHUNK_MAX_TOKENS", "4", "must be >= 16"),
    ("PORTAL_DEBUG", "maybe", "expected one of"),
    ("DATABASE_URL", "mysql://x/y", "only postgres://"),
    ("CELERY_BROKER_URL", "kafka://x", "unsupported broker scheme"),
    ("PORTAL_LANGUAGE", "fr", "must be one of vi, en"),
    ("PORTAL_CHAT_URL", "ftp://llm.internal/v1", "expected an http:// or https:// URL"),
    ("PORTAL_ANSWER_CHAT_URL", "llm.internal/v1", "expected an http:// or https:// URL"),
    ("PORTAL_ANSWER_CHAT_TIMEOUT", "0", "must be >= 0.1"),
])
def test_a_bad_value_fails_the_system_check_with_its_name(name, value, reason):
    result = run_check(**{name: value})
    assert result.returncode != 0
    assert "portal.E001" in result.stderr and name in result.stderr and reason in result.stderr


def test_an_answer_endpoint_without_a_model_fails_the_check():
    result = run_check(PORTAL_ANSWER_CHAT_URL="http://llm.internal:8080/v1")
    assert result.returncode != 0 and "PORTAL_ANSWER_CHAT_MODEL" in result.stderr


def test_the_default_configuration_passes_the_check():
    result = run_check()
    assert result.returncode == 0, result.stderr


def test_overlap_must_be_smaller_than_the_chunk_budget():
    result = run_check(PORTAL_CHUNK_MAX_TOKENS="64", PORTAL_CHUNK_OVERLAP_TOKENS="64")
    assert result.returncode != 0 and "portal.E002" in result.stderr


def test_database_url_parsing():
    parsed = config.parse_database_url("postgres://app:s%40cret@db.internal:6543/portal")
    assert parsed["NAME"] == "portal" and parsed["PASSWORD"] == "s@cret"
    assert parsed["HOST"] == "db.internal" and parsed["PORT"] == "6543"


def test_configuration_doc_is_current():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == config.render_markdown(), "regenerate: python -m portal.config > docs/configuration.md"
