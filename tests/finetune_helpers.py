"""Small builders for the fine-tuning dataset tests."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from finetune.services.datasets import SourceFile


def jsonl(name: str, *records, raw: list[str] | None = None) -> SourceFile:
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + list(raw or [])
    return SourceFile(name, ("\n".join(lines) + "\n").encode())


def metadata(*documents) -> SourceFile:
    return SourceFile("document_metadata.json", json.dumps({"documents": list(documents)}, ensure_ascii=False).encode())


def meta_doc(doc_id: str, level: int, *texts: str, **extra) -> dict:
    return {"doc_id": doc_id, "title": extra.get("title", f"Tài liệu {doc_id}"), "department": "HR",
            "access_level": level, "document_type": extra.get("document_type", "policy"), "tags": [],
            "chunks": [{"chunk_id": f"{doc_id}-{i}", "text": t, "keywords": extra.get("keywords", [])}
                       for i, t in enumerate(texts)]}


def vicov_file(folder: Path, split: str, rows: list[tuple[str, str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"UIT-ViCoV19QA_{split}.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="|", quotechar='"', quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["id", "Question", "Answer_1"])
        writer.writerows(rows)
    return path


def pairs_of(dataset) -> list[dict]:
    return list(dataset.pairs.order_by("pk").values())
