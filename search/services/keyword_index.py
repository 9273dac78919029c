"""BM25 keyword search inside PostgreSQL (placeholder: being implemented)."""


def index_document(document_id: int) -> int:
    raise NotImplementedError


def note_removed() -> None:
    pass
