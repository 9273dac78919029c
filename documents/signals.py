"""Hand-offs from the documents app to the apps built on it (which connect
receivers; documents never imports them).

`document_chunked` is sent after a document's chunks are committed. The search
app connects a receiver that queues embedding for every space being served;
ingestion knows nothing about embeddings.

`samples_loaded` is sent by `manage.py load_samples` once every sample document
is ready (processed and chunked). The evaluation app connects a receiver that
imports the sample corpus's evaluation sets; each receiver returns the lines
it wants printed.
"""
from django.dispatch import Signal

document_chunked = Signal()  # kwargs: document_id, chunk_count
samples_loaded = Signal()  # kwargs: samples_dir (pathlib.Path); receivers return a list of lines to print
