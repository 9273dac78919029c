"""Evaluation of retrieval quality: evaluation sets, the runner, metrics,
reports, model comparison and hybrid calibration (see docs/evaluation.md)."""
