"""Where a machine keeps its copy of the tantivy index, and how it is opened.

    $PORTAL_KEYWORD_INDEX_DIR/<analyzer version>/
        CURRENT        the name of the copy searched now (replaced atomically by a rebuild)
        writer.lock    one writer per index (flock; ends with its process)
        <copy id>/     tantivy's segments and cursor.json: how far this copy applied the change log

A copy id is the machine's name plus a random suffix: a fresh folder (a new
machine, a deleted index) is a new copy, never mistaken for an old one.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import tantivy
from django.conf import settings

from search.services.keyword_engine.analysis import ANALYZER_VERSION

INT_FIELDS = ("chunk_id", "document_id", "access_level", "owner_id", "department_ids", "tag_ids", "effective_day")
NO_OWNER = 0  # user ids start at 1


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    for name in ("text", "folded", "title"):  # BM25 needs term frequencies, not positions
        sb.add_text_field(name, tokenizer_name="whitespace", index_option="freq")
    for name in INT_FIELDS:  # the access key and the facets: filtered inside the query
        sb.add_integer_field(name, indexed=True, fast=True)
    for name in ("document_type", "language"):
        sb.add_text_field(name, tokenizer_name="raw", fast=True, index_option="basic")
    return sb.build()


SCHEMA = build_schema()


def base_dir() -> Path:
    return Path(settings.KEYWORD_INDEX_DIR) / ANALYZER_VERSION


def current_copy() -> Path | None:
    """The copy searched now, or None before the first build."""
    try:
        name = (base_dir() / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    path = base_dir() / name
    return path if (path / "meta.json").exists() else None


def new_copy_dir() -> Path:
    path = base_dir() / f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def make_current(copy: Path) -> None:
    _write_atomically(base_dir() / "CURRENT", copy.name + "\n")


def read_cursor(copy: Path) -> tuple[int, int]:
    data = json.loads((copy / "cursor.json").read_text())
    return int(data["xid"]), int(data["id"])


def write_cursor(copy: Path, cursor: tuple[int, int]) -> None:
    _write_atomically(copy / "cursor.json", json.dumps({"xid": cursor[0], "id": cursor[1]}))


@contextmanager
def writer_lock(wait: bool):
    """The index's writer lock; yields False (and holds nothing) when another
    process has it and `wait` is False."""
    base_dir().mkdir(parents=True, exist_ok=True)
    with open(base_dir() / "writer.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_index(copy: Path) -> tantivy.Index:
    return tantivy.Index(SCHEMA, path=str(copy), reuse=True)


_readers: dict[str, tuple[tantivy.Index, int]] = {}  # copy path → (index, meta.json mtime at last reload)
_readers_lock = threading.Lock()


def reader() -> tantivy.Index | None:
    """The current copy opened for searching in this process, reloaded when a
    writer (in any process) committed since; None before the first build."""
    copy = current_copy()
    if copy is None:
        return None
    key = str(copy)
    mtime = (copy / "meta.json").stat().st_mtime_ns
    with _readers_lock:
        if key not in _readers:
            _readers.clear()  # a rebuild replaced the copy: let the old one go
            _readers[key] = (open_index(copy), mtime)
        index, seen = _readers[key]
        if mtime != seen:
            index.reload()
            _readers[key] = (index, mtime)
        return index
