"""Layering (issue 9 item 18): the documents app never imports the search app
(search builds on documents, not the other way round), and the model that
counts chunk tokens is configured, not injected by an import side effect."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def test_documents_never_imports_search():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in sorted((ROOT / "documents").rglob("*.py"))
                 for line, module in _imported_modules(path)
                 if module == "search" or module.startswith("search.")]
    assert offenders == []


def test_documents_and_search_never_import_finetune():
    """Fine-tuning builds on documents, search and evaluation, never the other way round."""
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for app in ("documents", "search")
                 for path in sorted((ROOT / app).rglob("*.py"))
                 for line, module in _imported_modules(path)
                 if module == "finetune" or module.startswith("finetune.")]
    assert offenders == []


def test_documents_and_search_never_import_answers():
    """Answers build on search (its entry point, the access function, the floors), never the other way round."""
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for app in ("documents", "search")
                 for path in sorted((ROOT / app).rglob("*.py"))
                 for line, module in _imported_modules(path)
                 if module == "answers" or module.startswith("answers.")]
    assert offenders == []


def test_the_scan_sees_function_level_imports(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from search.services.spaces import space_for\n")
    assert list(_imported_modules(sample)) == [(2, "search.services.spaces")]


def fixed_model_path():
    return "/models/configured"


def test_chunking_model_comes_from_the_configured_resolver(settings, monkeypatch):
    from documents.services import processing, tokens

    seen = []
    monkeypatch.setattr(tokens, "token_counter", lambda path: seen.append(path) or _Counter())
    settings.CHUNKING_MODEL_RESOLVER = "tests.test_app_boundaries.fixed_model_path"
    assert processing.current_chunking_policy().model_path == "/models/configured"
    settings.CHUNKING_MODEL_RESOLVER = None
    settings.EMBEDDING_MODEL = "/models/fallback"
    assert processing.current_chunking_policy().model_path == "/models/fallback"
    assert seen == ["/models/configured", "/models/fallback"]


class _Counter:
    def budget(self, wanted):
        return wanted


@pytest.mark.django_db
def test_the_active_space_model_counts_chunk_tokens(settings, monkeypatch):
    from documents.services import processing, tokens
    from search.models import EmbeddingSpace, SpaceStatus

    monkeypatch.setattr(tokens, "token_counter", lambda path: _Counter())
    settings.EMBEDDING_MODEL = "/models/fallback"
    assert processing.current_chunking_policy().model_path == "/models/fallback"  # no active space yet
    EmbeddingSpace.objects.create(name="active", model_path="/models/active", dimension=3, max_seq_length=8,
                                  status=SpaceStatus.ACTIVE)
    assert processing.current_chunking_policy().model_path == "/models/active"
