"""The hand-off from ingestion to embedding.

`document_chunked` is sent after a document's chunks are committed. The search
app connects a receiver that queues embedding for every space being served;
ingestion knows nothing about embeddings.
"""
from django.dispatch import Signal

document_chunked = Signal()  # kwargs: document_id, chunk_count
