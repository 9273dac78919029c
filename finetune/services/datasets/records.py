"""What every source produces, and how a source says it cannot be used."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.utils.translation import gettext as _

PROBLEMS_SHOWN = 20  # problems named in a message; the rest are counted


@dataclass
class PairRecord:
    """One (query, positive[, negative]) pair before it is written. `doc_key` is
    the document the positive came from: the unit of the train / eval split."""

    query: str
    positive: str
    source: str
    doc_key: str
    negative: str = ""
    negative_score: float | None = None
    chunk_id: int | None = None
    access_level: int | None = None
    query_type: str = ""
    domain: str = ""
    line: int | None = None
    fixed_split: str | None = None  # a benchmark's own held-out split ("eval"), else chosen by document
    split: str = ""


class SourceError(ValueError):
    """A source cannot be used as given. `problems` lists every fault found
    (line-numbered for JSON Lines, a JSON path for the metadata file); nothing
    was written."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        shown = "; ".join(problems[:PROBLEMS_SHOWN])
        more = len(problems) - PROBLEMS_SHOWN
        super().__init__(f"{source}: {shown}" + ("; " + _("… and %(n)d more") % {"n": more} if more > 0 else ""))


@dataclass
class SourceFile:
    """An input file: its name (for messages) and its bytes. The command reads a
    path; the API hands over an upload."""

    name: str
    data: bytes

    @classmethod
    def from_path(cls, path: str | Path) -> "SourceFile":
        path = Path(path)
        try:
            return cls(path.name, path.read_bytes())
        except OSError as exc:
            raise SourceError(str(path), [_("cannot be read (%(reason)s)") % {"reason": exc.strerror or exc}]) from None

    @classmethod
    def from_upload(cls, upload) -> "SourceFile":
        return cls(getattr(upload, "name", "upload"), b"".join(upload.chunks()))

    def text(self) -> str:
        try:
            return self.data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SourceError(self.name, [_("not UTF-8 text (byte %(byte)d)") % {"byte": exc.start}]) from None
