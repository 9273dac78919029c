"""Chunker speed on a large text (no extraction, no database, no embedding).

    .venv/bin/python bench/chunking_speed.py [--size-mb 10] [--shape document|one-paragraph|no-sentences]
                                             [--max-tokens 800] [--overlap 48] [--model PATH]

Builds a text of the given size from the sample corpus sources
(documents/samples/source/*.md, repeated) in one of three shapes and times
`chunking.chunk_sections` with the model's own tokenizer (all-MiniLM-L6-v2 by
default: budget 254 tokens):

- document: sections under their headings, paragraphs separated by newlines;
- one-paragraph: one section, no newlines (every paragraph over budget is cut
  into sentences);
- no-sentences: one section, no newlines and no sentence punctuation (every
  unit is cut into runs of words: the binary search in `_word_runs`).

Prints the seconds, chunks, tokenizer calls and characters tokenised, with the
git commit, so a figure can be traced to the code it measured.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def source_sections():
    from documents.services.extraction import Section, normalise

    sections = []
    for path in sorted((ROOT / "documents" / "samples" / "source").glob("*.md")):
        body = path.read_text(encoding="utf-8").split("---", 2)[-1]
        heading, lines = [path.stem], []
        for line in body.splitlines():
            match = re.match(r"^#{1,6}\s+(.*)$", line)
            if match:
                if lines:
                    sections.append(Section(list(heading), normalise("\n".join(lines))))
                heading, lines = [path.stem, match.group(1).strip()], []
            elif line.strip():
                lines.append(line)
        if lines:
            sections.append(Section(list(heading), normalise("\n".join(lines))))
    return [s for s in sections if s.text]


def build(shape: str, size: int):
    from documents.services.extraction import Section

    base = source_sections()
    out, total, copy = [], 0, 0
    while total < size:
        for s in base:
            out.append(Section([f"{s.heading_path[0]} #{copy}"] + s.heading_path[1:], s.text))
            total += len(s.text.encode("utf-8"))
            if total >= size:
                break
        copy += 1
    if shape == "document":
        return out
    text = " ".join(s.text.replace("\n", " ") for s in out)
    if shape == "no-sentences":
        text = re.sub(r"[.!?…;:]", "", text)
    return [Section(["Một văn bản rất dài"], text)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=float, default=10)
    parser.add_argument("--shape", default="document", choices=["document", "one-paragraph", "no-sentences"])
    parser.add_argument("--max-tokens", type=int, default=800)
    parser.add_argument("--overlap", type=int, default=48)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    run = _record.start()

    from documents.services import chunking, tokens

    counter = tokens.token_counter(args.model or str(tokens.default_model_path()))
    budget = counter.budget(args.max_tokens)
    sections = build(args.shape, int(args.size_mb * 1024 * 1024))
    size = sum(len(s.text.encode("utf-8")) for s in sections)
    calls = {"n": 0, "chars": 0}

    def count(text: str) -> int:
        calls["n"] += 1
        calls["chars"] += len(text)
        return counter.count(text)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"commit {commit}, {platform.node()}, {os.cpu_count()} cpus; shape {args.shape}, "
          f"{size / 1048576:.1f} MB in {len(sections)} sections, model {Path(counter.model_path).name}, "
          f"budget {budget}, overlap {min(args.overlap, budget // 4)}")
    started = time.perf_counter()
    content, drafts = chunking.chunk_sections(sections, count, max_tokens=budget,
                                              overlap=min(args.overlap, budget // 4))
    seconds = time.perf_counter() - started
    print(f"{seconds:.1f} s, {len(drafts)} chunks, {calls['n']} tokenizer calls, "
          f"{calls['chars'] / 1e6:.1f} M characters tokenised ({calls['chars'] / max(len(content), 1):.1f}x the text)")
    _record.save(f"chunking-speed-{args.shape}", {
        "shape": args.shape, "megabytes": round(size / 1048576, 2), "sections": len(sections),
        "model": Path(counter.model_path).name, "budget": budget, "seconds": round(seconds, 2),
        "chunks": len(drafts), "tokenizer_calls": calls["n"], "characters_tokenised": calls["chars"]}, run)


if __name__ == "__main__":
    main()
