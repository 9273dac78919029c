"""Training datasets: (query, positive[, hard negative]) pairs from any mix of

- imported files (`imports`): positive_pairs.jsonl, hard_negatives.jsonl and
  document_metadata.json, in the formats of DESIGN.md;
- the vicov19qa benchmark's train (and val) file, read from its path (`benchmark`);
- search and answer feedback (`feedback`): helpful or opened results as
  positives, results voted unhelpful as negatives; an answer's opened or
  helpful citations as positives for its question, the citations of an
  answer voted unhelpful as negatives (`answer_feedback`);
- synthetic queries for the portal's or the metadata's chunks (`synthetic`):
  offline, or from an OpenAI-compatible chat endpoint;

split into train / eval by document (`splitting`), written and validated
(`build`). Portal content is read only through the building user's access.
"""
from finetune.services.datasets.build import DatasetRefused, DatasetSpec, build_dataset, summarise
from finetune.services.datasets.records import PairRecord, SourceError, SourceFile

__all__ = ["DatasetRefused", "DatasetSpec", "PairRecord", "SourceError", "SourceFile", "build_dataset", "summarise"]
