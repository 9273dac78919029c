"""An OpenAI-compatible chat endpoint on loopback for the answer tests, and
the behaviours of a real one going wrong.

`AnswerChatStub(reply, guard=…)`: `reply(body)` → a `Reply` (status, payload,
delay before answering, trickle: seconds between bytes) or, for a streamed
request, a `Streamed` (server-sent events: text pieces or raw bytes, a gap
between them, `[DONE]` or a connection cut off mid-stream). Every request is
recorded. `guard(body)` → a list of problems (a forbidden passage in the
prompt…): a request with any is answered 500 and the test FAILS when the stub
closes, whatever the portal did with the 500. Everything is bounded: the
server's threads are daemons and every sleep is short."""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Reply:
    status: int = 200
    payload: object = None  # dict (sent as JSON), bytes (sent as they are)
    delay: float = 0.0
    trickle: float = 0.0  # seconds between single bytes of the body (a slow-drip server)


@dataclass
class Streamed:
    """An OpenAI-style event stream: each str of `events` is one
    `data: {choices[0].delta.content}` event, each bytes sent as it is (garbage,
    comments); `gap` seconds before each event; then `data: [DONE]`, unless
    `done` is False (the connection just closes: a stream cut off)."""
    events: list = None
    gap: float = 0.0
    done: bool = True
    status: int = 200


def delta(text: str) -> bytes:
    event = {"id": "stub", "object": "chat.completion.chunk", "model": "stub-model",
             "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


def streams(*pieces: str, gap: float = 0.0) -> Callable[[dict], Streamed]:
    """A model that streams `pieces` (a role-only first event, as OpenAI sends one)."""
    return lambda body: Streamed([b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n',
                                  *pieces], gap=gap)


def completion(text: str) -> dict:
    return {"id": "stub", "object": "chat.completion", "model": "stub-model", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def says(text: str) -> Callable[[dict], Reply]:
    return lambda body: Reply(200, completion(text))


def user_message(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def system_message(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "system")


class AnswerChatStub:
    def __init__(self, reply: Callable[[dict], Reply], guard: Callable[[dict], list[str]] | None = None):
        self.reply = reply
        self.guard = guard
        self.requests: list[dict] = []
        self.problems: list[str] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                problems = stub.guard(body) if stub.guard else []
                if problems:
                    stub.problems += problems
                    answer = Reply(500, {"error": "forbidden passage in the prompt"})
                else:
                    answer = stub.reply(body)
                if isinstance(answer, Streamed):
                    return self._stream(answer)
                time.sleep(answer.delay)
                payload = answer.payload
                data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if answer.trickle:
                        for i in range(len(data)):
                            self.wfile.write(data[i:i + 1])
                            self.wfile.flush()
                            time.sleep(answer.trickle)
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the portal gave up (a timeout test)
                    pass

            def _stream(self, answer: Streamed):
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-cache")
                    self.end_headers()
                    for event in answer.events or []:
                        time.sleep(answer.gap)
                        self.wfile.write(event if isinstance(event, bytes) else delta(event))
                        self.wfile.flush()
                    if answer.done:
                        self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the portal gave up
                    pass
                # HTTP/1.0: the body ends when the connection closes (also for a stream cut off)

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
        if exc[0] is None:
            assert not self.problems, f"the chat model was sent what the asker may not see: {self.problems}"


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def use_endpoint(settings, url: str, *, timeout: float = 5.0, model: str = "stub-model", key: str | None = "k-secret"):
    settings.ANSWER_CHAT_URL = url
    settings.ANSWER_CHAT_MODEL = model
    settings.ANSWER_CHAT_API_KEY = key
    settings.ANSWER_CHAT_TIMEOUT = timeout
