"""Helpers shared by the renderers: inline code, company name, metadata line."""
from __future__ import annotations

import datetime as dt
import re

from .source import Doc

COMPANY_VI = "Công ty Cổ phần Công nghệ Sao Việt (SVTech)"
COMPANY_EN = "Sao Viet Technology Joint Stock Company (SVTech)"
AUTHOR = "SVTech"

ACCESS_LABELS_VI = {0: "Công khai", 1: "Nội bộ", 2: "Hạn chế (theo phòng ban)", 3: "Mật"}
ACCESS_LABELS_EN = {0: "Public", 1: "Internal", 2: "Restricted (department)", 3: "Confidential"}
DEPT_NAMES_EN = {
    "HR": "Human Resources Department",
    "IT": "Information Technology Department",
    "FIN": "Finance and Accounting Department",
    "OPS": "Operations Department",
    "LEGAL": "Legal Department",
    "SALES": "Sales Department",
}


_INLINE_CODE = re.compile(r"`([^`]+)`")


def plain(text: str) -> str:
    """Text without inline Markdown markers."""
    return _INLINE_CODE.sub(r"\1", text)


def inline_parts(text: str) -> list[tuple[str, bool]]:
    """Split text into (segment, is_code) parts."""
    parts: list[tuple[str, bool]] = []
    pos = 0
    for m in _INLINE_CODE.finditer(text):
        if m.start() > pos:
            parts.append((text[pos:m.start()], False))
        parts.append((m.group(1), True))
        pos = m.end()
    if pos < len(text):
        parts.append((text[pos:], False))
    return parts


def company(doc: Doc) -> str:
    return COMPANY_EN if doc.english else COMPANY_VI


def meta_line(doc: Doc, taxonomy: dict) -> str:
    eff = dt.date.fromisoformat(doc.effective_date)
    if doc.english:
        owners = ", ".join(DEPT_NAMES_EN[d] for d in doc.departments)
        return (f"Document code: {doc.code} | Version: {doc.version} | "
                f"Effective date: {eff.isoformat()} | Owner: {owners} | "
                f"Classification: {ACCESS_LABELS_EN[doc.access_level]}")
    names = {d["code"]: d["name"] for d in taxonomy["departments"]}
    owners = ", ".join(names[d] for d in doc.departments)
    return (f"Mã tài liệu: {doc.code} | Phiên bản: {doc.version} | "
            f"Ngày hiệu lực: {eff.strftime('%d/%m/%Y')} | Đơn vị ban hành: {owners} | "
            f"Phân loại: {ACCESS_LABELS_VI[doc.access_level]}")


def fixed_datetime(doc: Doc) -> dt.datetime:
    return dt.datetime.fromisoformat(doc.effective_date + "T08:00:00")
