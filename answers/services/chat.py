"""One chat completion from the answer endpoint (PORTAL_ANSWER_CHAT_URL, an
OpenAI-compatible `POST …/chat/completions`), within a deadline: whole
(`complete`) or streamed as the model writes it (`stream`, server-sent events).

A person is waiting, so: one try, no retries, and the timeout bounds the whole
call — connecting, waiting for the first byte and reading — not each socket
operation (urllib's `timeout` is per operation, so a server trickling one byte
a second would hold a request for ever). Every way it can go wrong ends in a
`ChatFailure` naming why, which the answer service turns into the extracted
answer with a notice; errors name the URL and the reason, never the key.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_RESPONSE_BYTES = 1_000_000  # an answer is a few kB; more is not a chat completion
READ_SIZE = 16_384


class Failure:
    """Why the chat model's answer was not used (the notice codes of the answer service)."""
    UNREACHABLE = "chat-unreachable"    # refused connection, DNS, 5xx, 401/404 (a wrong URL or key)
    TIMEOUT = "chat-timeout"
    RATE_LIMITED = "chat-rate-limited"  # 429
    BAD_ANSWER = "chat-bad-answer"      # not JSON, not a chat completion, empty


class ChatFailure(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ChatEndpoint:
    url: str
    model: str
    api_key: str | None = None
    timeout: float = 20.0

    @property
    def completions_url(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"


def _request(endpoint: ChatEndpoint, messages: list[dict], temperature: float, max_tokens: int,
             streamed: bool) -> tuple[bytes, dict]:
    body = json.dumps({"model": endpoint.model, "messages": messages, "temperature": temperature,
                       "max_tokens": max_tokens, "stream": streamed}, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json; charset=utf-8",
               "Accept": "text/event-stream" if streamed else "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    return body, headers


def _check_status(status: int, where: str) -> None:
    if status == 429:
        raise ChatFailure(Failure.RATE_LIMITED, f"{where} is rate-limiting (HTTP 429)")
    if status != 200:
        raise ChatFailure(Failure.UNREACHABLE, f"{where} answered HTTP {status}")


def complete(endpoint: ChatEndpoint, messages: list[dict], *, temperature: float = 0.1,
             max_tokens: int = 800) -> str:
    """The assistant's text for `messages`, or ChatFailure."""
    body, headers = _request(endpoint, messages, temperature, max_tokens, streamed=False)
    status, raw = _post(endpoint.completions_url, body, headers, endpoint.timeout)
    _check_status(status, endpoint.completions_url)
    return _content(raw, endpoint.completions_url)


def stream(endpoint: ChatEndpoint, messages: list[dict], *, temperature: float = 0.1,
           max_tokens: int = 800) -> Iterator[str]:
    """The assistant's text for `messages` in pieces, as the model writes them
    (`"stream": true`: `data: {choices[0].delta.content}` events, then
    `data: [DONE]`). The deadline bounds the whole stream, not each piece: a
    model trickling one token a second is cut off at `endpoint.timeout`. Every
    failure is a ChatFailure, also after some pieces were given — the caller
    decides what becomes of those. A server that ignores `stream` and answers
    with one JSON completion gives its text as one piece."""
    where = endpoint.completions_url
    body, headers = _request(endpoint, messages, temperature, max_tokens, streamed=True)
    with _open(where, body, headers, endpoint.timeout) as (response, read):
        _check_status(response.status, where)
        if "json" in (response.getheader("Content-Type") or ""):
            yield _content(b"".join(iter(read, b"")), where)
            return
        buffer, wrote = b"", False
        while True:
            piece = read()
            if not piece:
                raise ChatFailure(Failure.BAD_ANSWER, f"{where} ended its stream before the answer did")
            buffer += piece
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = _event_text(line.strip(), where)
                if text is None:  # data: [DONE]
                    if not wrote:
                        raise ChatFailure(Failure.BAD_ANSWER, f"{where} answered with no text")
                    return
                if text:
                    wrote = wrote or bool(text.strip())
                    yield text


def _event_text(line: bytes, where: str) -> str | None:
    """The text of one line of an event stream ("" for a line without any:
    blank, a comment, another field, a delta with no content); None at [DONE]."""
    if not line.startswith(b"data:"):
        return ""  # blank (end of an event), ": keep-alive" comments, event:/id:/retry: fields
    data = line[5:].strip()
    if data == b"[DONE]":
        return None
    try:
        event = json.loads(data)
        if "error" in event and not event.get("choices"):
            raise ChatFailure(Failure.BAD_ANSWER, f"{where} reported an error in its stream")
        content = event["choices"][0]["delta"].get("content") if event["choices"] else ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise ChatFailure(Failure.BAD_ANSWER, f"{where} did not stream a chat completion") from None
    if content is not None and not isinstance(content, str):
        raise ChatFailure(Failure.BAD_ANSWER, f"{where} did not stream a chat completion")
    return content or ""


def _content(raw: bytes, where: str) -> str:
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ChatFailure(Failure.BAD_ANSWER, f"{where} did not answer with a chat completion") from None
    if not isinstance(content, str) or not content.strip():
        raise ChatFailure(Failure.BAD_ANSWER, f"{where} answered with no text")
    return content.strip()


def _post(url: str, body: bytes, headers: dict, timeout: float) -> tuple[int, bytes]:
    """(status, body) of one POST, all of it within `timeout` seconds."""
    with _open(url, body, headers, timeout) as (response, read):
        return response.status, b"".join(iter(read, b""))


@contextmanager
def _open(url: str, body: bytes, headers: dict, timeout: float):
    """One POST to `url`: (the response, `read()` → its next bytes, b"" at the
    end), with every step — connecting, sending, waiting, each read — bounded
    by what is left of `timeout` seconds from now. Failures, including those
    raised while the caller reads, become ChatFailure; the connection is closed
    on leaving (also when a streaming caller stops early)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        return left

    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.connect()
        sock = conn.sock  # kept: the connection lets go of it once a response that closes is read
        sock.settimeout(remaining())
        conn.request("POST", path, body=body, headers=headers)
        sock.settimeout(remaining())
        response = conn.getresponse()
        size = 0

        def read() -> bytes:
            nonlocal size
            sock.settimeout(remaining())
            piece = response.read1(READ_SIZE)
            size += len(piece)
            if size > MAX_RESPONSE_BYTES:
                raise ChatFailure(Failure.BAD_ANSWER, f"{url} answered with more than {MAX_RESPONSE_BYTES} bytes")
            return piece

        yield response, read
    except (socket.timeout, TimeoutError):
        raise ChatFailure(Failure.TIMEOUT, f"{url} did not answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
        raise ChatFailure(Failure.UNREACHABLE, f"{url} could not be reached ({reason})") from None
    finally:
        conn.close()
