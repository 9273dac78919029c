"""Synthetic queries from an OpenAI-compatible chat endpoint (POST
{PORTAL_CHAT_URL}/chat/completions), configured by URL, model and key; not
configured by default. Each chunk is one request; an outage or an overloaded
server (connection refused, timeout, 408, 429, 5xx) is retried with backoff
PORTAL_CHAT_RETRIES times, anything else (401, 404, an answer that is not a
chat completion) fails at once. Errors name the URL and the reason, never the key.

The chunk text is sent to that endpoint: configure only a server the company
trusts with every document the building user may see.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.request

from django.conf import settings

from finetune.services.datasets.synthetic.chunks import SourceChunk
from finetune.services.texts import clean

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
_NUMBERED = re.compile(r"^\s*(?:[-*•]|\d+[.)]|q\d*[:.)])\s*", re.IGNORECASE)
MAX_QUERY_CHARS = 300
MAX_PASSAGE_CHARS = 4000

SYSTEM_PROMPT = (
    "You write the search queries employees of a company type into its internal document portal to find a "
    "passage. Write them in the passage's language (Vietnamese passages get Vietnamese queries; write some "
    "without diacritics, as people often type). Mix short keyword queries and full questions. Do not copy "
    "sentences from the passage. Reply with one query per line and nothing else.")


class ChatError(RuntimeError):
    """The chat endpoint is not configured, cannot be reached, or answered badly."""


def completions_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def parse_queries(content: str, n: int) -> list[str]:
    queries: dict[str, str] = {}
    for line in content.splitlines():
        query = clean(_NUMBERED.sub("", line)).strip("\"'“”‘’` ")
        if query and len(query) <= MAX_QUERY_CHARS:
            queries.setdefault(query.lower(), query)
    return list(queries.values())[:n]


class ChatGenerator:
    name = "http"

    def __init__(self, url: str | None = None, model: str | None = None, api_key: str | None = None, *,
                 timeout: float | None = None, retries: int | None = None, backoff: float = 1.0,
                 per_chunk: int = 3):
        self.url = url if url is not None else settings.CHAT_URL
        self.model = model if model is not None else settings.CHAT_MODEL
        self.api_key = api_key if api_key is not None else settings.CHAT_API_KEY
        self.timeout = timeout if timeout is not None else settings.CHAT_TIMEOUT
        self.retries = retries if retries is not None else settings.CHAT_RETRIES
        self.backoff = backoff
        self.per_chunk = per_chunk
        if not self.url or not self.model:
            raise ChatError("No chat endpoint is configured: set PORTAL_CHAT_URL and PORTAL_CHAT_MODEL "
                            "(or use the offline generator).")

    def describe(self) -> dict:
        return {"url": completions_url(self.url), "model": self.model}

    def has_content(self, chunk: SourceChunk) -> bool:
        return bool(chunk.text.strip())

    def _request(self, chunk: SourceChunk, n: int) -> urllib.request.Request:
        context = "\n".join(x for x in (f"Title: {chunk.title}" if chunk.title else "",
                                        f"Section: {' > '.join(chunk.heading_path)}" if chunk.heading_path else "") if x)
        body = {"model": self.model, "temperature": 0.7, "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{context}\nPassage:\n{chunk.text[:MAX_PASSAGE_CHARS]}\n\n"
                                        f"Write {n} different queries that this passage answers."}]}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(completions_url(self.url), data=json.dumps(body).encode(), headers=headers,
                                      method="POST")

    def _call(self, request: urllib.request.Request) -> dict:
        attempts = 1 + max(0, self.retries)
        reason = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 30))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = clean(exc.read()[:200].decode("utf-8", "replace"))
                reason = f"HTTP {exc.code}" + (f": {detail}" if detail else "")
                if exc.code not in RETRY_STATUSES:
                    raise ChatError(f"The chat endpoint {request.full_url} refused the request ({reason}).") from None
                continue
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                    http.client.HTTPException) as exc:
                reason = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
                continue
            try:
                return json.loads(raw)
            except ValueError:
                raise ChatError(f"The chat endpoint {request.full_url} did not answer with JSON.") from None
        raise ChatError(f"The chat endpoint {request.full_url} did not answer after {attempts} "
                        f"tries (last: {reason}).")

    def generate(self, chunk: SourceChunk, n: int | None = None) -> list[tuple[str, str]]:
        n = n or self.per_chunk
        answer = self._call(self._request(chunk, n))
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ChatError(f"The chat endpoint {completions_url(self.url)} answered without a chat completion "
                            "(choices[0].message.content).") from None
        if not isinstance(content, str):
            raise ChatError(f"The chat endpoint {completions_url(self.url)} answered with no text.")
        return [(query, "llm") for query in parse_queries(content, n)]
