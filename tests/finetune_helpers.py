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


class ChatStub:
    """An OpenAI-compatible chat endpoint on loopback, scripted per request:
    `answers` is a list of (status, body-or-callable, delay_s); the last one
    repeats. Requests are recorded (path, headers, JSON body)."""

    def __init__(self, answers):
        import http.server
        import threading

        self.answers = list(answers)
        self.requests: list[dict] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                import time

                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, answer, delay = stub.answers[min(len(stub.requests), len(stub.answers)) - 1]
                time.sleep(delay)
                payload = answer(body) if callable(answer) else answer
                data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": text}, "finish_reason": "stop"}]}
