"""The validation report run before training: `validate_dataset(dataset,
model_path=None, max_length=512) -> {"errors", "warnings", "stats"}`. Each
finding is {"code", "message", "msgid", "params", "count", "examples"};
examples name pair ids (a few texts for leaks). The message is stored as msgid
and parameters; `translated(report)` shows it in the reader's language.

Errors stop a job (training on them would be wrong, or its measurement a lie):
- `not_built`: the dataset failed or is still building;
- `empty`: no train pairs;
- `empty_text`: a pair with an empty query or positive;
- `negative_is_positive`: a pair's hard negative is its own positive, or a
  positive of the same query elsewhere (texts compared by `near_key`). A passage
  that is one query's positive and *another* query's negative is normal — mined
  negatives are other pairs' positives — and is not flagged;
- leakage between train and eval: `leak_document` (a doc key in both),
  `leak_positive` (a positive in both), `leak_query` (a query in both),
  `leak_negative` (a train negative that is an eval positive).

Warnings are shown, and training goes on: `no_eval` (no held-out pairs: no early
stopping, no held-out metrics), `few_pairs` (under 100 train pairs),
`exact_duplicates` (the same query and positive after `clean`),
`near_duplicates` (the same after accent and case folding and punctuation —
`near_key`, not shingle similarity), `shared_query` (one query with several
positives: they are false negatives of each other in a batch), `over_long`
(texts longer than the model reads, in its own tokens, with its prompt and
special tokens; only when a model is given).

Stats: counts per split and source, distinct documents, query_type and domain
distributions, the language mix of queries and positives (finetune.services.texts.language),
and token lengths when a model is given.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from django.utils.translation import gettext, gettext_noop

from finetune.models import DatasetStatus, Split, TrainingDataset
from finetune.services.texts import clean, language, near_key

EXAMPLES = 5
FEW_PAIRS = 100


def _finding(code: str, msgid: str, params: dict, ids: list[int], examples: list | None = None) -> dict:
    """The message is stored as its msgid and parameters (shown in the reader's
    language by `translated`) and, for logs and the command, as rendered now."""
    return {"code": code, "message": gettext(msgid) % params, "msgid": msgid, "params": params, "count": len(ids),
            "examples": (examples or ids)[:EXAMPLES]}


def translated(report: dict) -> dict:
    """The report with its messages in the active language."""
    out = dict(report)
    for kind in ("errors", "warnings"):
        out[kind] = [{**f, "message": gettext(f["msgid"]) % f.get("params", {})} if f.get("msgid") else f
                     for f in report.get(kind, [])]
    return out


OVER_LONG = {
    "query": gettext_noop("%(n)d queries are longer than %(limit)d tokens: the model reads only their beginning."),
    "positive": gettext_noop("%(n)d positives are longer than %(limit)d tokens: the model reads only their beginning."),
    "negative": gettext_noop("%(n)d hard negatives are longer than %(limit)d tokens: the model reads only their "
                             "beginning."),
}


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _prompts(model_path: str) -> tuple[str, str]:
    path = Path(model_path) / "config_sentence_transformers.json"
    prompts = (json.loads(path.read_text()).get("prompts") or {}) if path.exists() else {}
    return prompts.get("query", ""), prompts.get("document") or prompts.get("passage", "")


def _lengths(rows: list[dict], model_path: str, max_length: int) -> tuple[dict, list[dict]]:
    from documents.services.tokens import read_model_limits, token_counter

    counter = token_counter(str(model_path))
    model_max, _prefix = read_model_limits(Path(model_path))
    limit = min(max_length, model_max)
    query_prompt, passage_prompt = _prompts(model_path)
    specials = counter._specials
    stats, over = {"limit_tokens": limit}, {}
    for field, prompt in (("query", query_prompt), ("positive", passage_prompt), ("negative", passage_prompt)):
        sizes = {}
        for row in rows:
            text = row[field]
            if text and text not in sizes:
                sizes[text] = counter.count(prompt + text) + specials
        longest = max(sizes.values(), default=0)
        too_long = [r["id"] for r in rows if r[field] and sizes[r[field]] > limit]
        stats[field] = {"max_tokens": longest, "over_limit": len(too_long)}
        if too_long:
            over[field] = too_long
    warnings = [_finding("over_long", OVER_LONG[field], {"n": len(ids), "limit": limit}, ids)
                for field, ids in over.items()]
    return stats, warnings


def _leaks(rows: list[dict]) -> list[dict]:
    sides: dict[str, dict[str, set]] = {kind: defaultdict(set) for kind in ("doc", "positive", "query")}
    for row in rows:
        sides["doc"][row["doc_key"]].add(row["split"])
        sides["positive"][row["positive_key"]].add(row["split"])
        sides["query"][row["query_key"]].add(row["split"])
    errors = []
    labels = {"doc": ("leak_document", gettext_noop("%(n)d documents have pairs in both train and eval.")),
              "positive": ("leak_positive", gettext_noop("%(n)d positives are in both train and eval.")),
              "query": ("leak_query", gettext_noop("%(n)d queries are in both train and eval."))}
    for kind, (code, message) in labels.items():
        both = {key for key, splits in sides[kind].items() if len(splits) > 1}
        if both:
            field = {"doc": "doc_key", "positive": "positive_key", "query": "query_key"}[kind]
            ids = [r["id"] for r in rows if r[field] in both]
            examples = sorted(both)[:EXAMPLES] if kind == "doc" else [
                _short(r["query" if kind == "query" else "positive"]) for r in rows if r[field] in both][:EXAMPLES]
            errors.append({**_finding(code, message, {"n": len(both)}, ids), "examples": examples})
    eval_positives = {r["positive_key"] for r in rows if r["split"] == Split.EVAL}
    leaked = [r["id"] for r in rows if r["split"] == Split.TRAIN and r["negative"] and r["negative_key"] in eval_positives]
    if leaked:
        errors.append(_finding("leak_negative", gettext_noop("%(n)d train pairs have an eval positive as their hard "
                                                             "negative."), {"n": len(leaked)}, leaked))
    return errors


def _conflicts(rows: list[dict]) -> list[int]:
    positives_of: dict[str, set] = defaultdict(set)
    for row in rows:
        positives_of[row["query_key"]].add(row["positive_key"])
    return [r["id"] for r in rows if r["negative"] and r["negative_key"] in positives_of[r["query_key"]]]


def _duplicates(rows: list[dict]) -> list[dict]:
    warnings = []
    exact = Counter((clean(r["query"]), clean(r["positive"])) for r in rows)
    near = defaultdict(set)
    for r in rows:
        near[(r["query_key"], r["positive_key"])].add((clean(r["query"]), clean(r["positive"])))
    exact_ids = [r["id"] for r in rows if exact[(clean(r["query"]), clean(r["positive"]))] > 1]
    if exact_ids:
        warnings.append(_finding("exact_duplicates", gettext_noop("%(n)d pairs repeat another pair exactly."),
                                 {"n": len(exact_ids)}, exact_ids))
    near_ids = [r["id"] for r in rows if len(near[(r["query_key"], r["positive_key"])]) > 1]
    if near_ids:
        warnings.append(_finding("near_duplicates", gettext_noop(
            "%(n)d pairs differ from another pair only in accents, case, spacing or punctuation."),
            {"n": len(near_ids)}, near_ids))
    positives = defaultdict(set)
    for r in rows:
        positives[r["query_key"]].add(r["positive_key"])
    shared = [r["id"] for r in rows if len(positives[r["query_key"]]) > 1]
    if shared:
        warnings.append(_finding("shared_query", gettext_noop(
            "%(n)d pairs share their query with a pair of another positive: in one batch they count as each "
            "other's negatives."), {"n": len(shared)}, shared))
    return warnings


def _stats(rows: list[dict]) -> dict:
    splits = {s: [r for r in rows if r["split"] == s] for s in (Split.TRAIN, Split.EVAL)}
    query_lang = Counter(language(r["query"]) for r in rows)
    positive_lang = {}
    for r in rows:
        positive_lang.setdefault(r["positive_key"], language(r["positive"]))
    cross = sum(1 for r in rows if language(r["query"]) != positive_lang[r["positive_key"]])
    return {
        "pairs": len(rows), "train": len(splits[Split.TRAIN]), "eval": len(splits[Split.EVAL]),
        "negatives": sum(1 for r in rows if r["negative"]),
        "documents": {str(s): len({r["doc_key"] for r in part}) for s, part in splits.items()},
        "by_source": dict(Counter(r["source"] for r in rows)),
        "query_types": dict(Counter(r["query_type"] or "-" for r in rows).most_common()),
        "domains": dict(Counter(r["domain"] or "-" for r in rows).most_common()),
        "languages": {"queries": dict(query_lang), "positives": dict(Counter(positive_lang.values())),
                      "pairs_across_languages": cross},
    }


def validate_dataset(dataset: TrainingDataset, model_path: str | None = None, max_length: int = 512) -> dict:
    """{"errors": [...], "warnings": [...], "stats": {...}} (module docstring)."""
    errors: list[dict] = []
    warnings: list[dict] = []
    if dataset.status == DatasetStatus.FAILED or dataset.built_at is None:
        errors.append(_finding("not_built", gettext_noop("The dataset was not built (status: %(status)s)."),
                               {"status": dataset.status}, []))
    rows = list(dataset.pairs.values("id", "split", "source", "query", "positive", "negative", "doc_key",
                                     "query_type", "domain"))
    for r in rows:
        r["query_key"], r["positive_key"] = near_key(r["query"]), near_key(r["positive"])
        r["negative_key"] = near_key(r["negative"]) if r["negative"] else ""
    stats = _stats(rows)
    if not stats["train"]:
        errors.append(_finding("empty", gettext_noop("The dataset has no training pairs."), {}, []))
    empty = [r["id"] for r in rows if not clean(r["query"]) or not clean(r["positive"])]
    if empty:
        errors.append(_finding("empty_text", gettext_noop("%(n)d pairs have an empty query or positive."),
                               {"n": len(empty)}, empty))
    conflicts = _conflicts(rows)
    if conflicts:
        errors.append(_finding("negative_is_positive", gettext_noop(
            "%(n)d pairs have as hard negative a positive of the same query."), {"n": len(conflicts)}, conflicts))
    errors += _leaks(rows)
    if rows and not stats["eval"]:
        warnings.append(_finding("no_eval", gettext_noop("No eval pairs: no early stopping and no held-out metrics."),
                                 {}, []))
    if 0 < stats["train"] < FEW_PAIRS:
        warnings.append(_finding("few_pairs", gettext_noop(
            "Only %(n)d training pairs: too few to change a model for the better."), {"n": stats["train"]}, []))
    warnings += _duplicates(rows)
    if model_path and rows:
        stats["tokens"], over = _lengths(rows, model_path, max_length)
        warnings += over
    return {"errors": errors, "warnings": warnings, "stats": stats}


def record_validation(dataset: TrainingDataset, model_path: str | None = None, max_length: int = 512) -> dict:
    """Validate and store the report; a built dataset becomes ready or invalid."""
    report = validate_dataset(dataset, model_path, max_length)
    dataset.validation = {**report, "model_path": str(model_path or ""), "max_length": max_length}
    fields = ["validation"]
    if dataset.status != DatasetStatus.FAILED and dataset.built_at is not None:
        dataset.status = DatasetStatus.INVALID if report["errors"] else DatasetStatus.READY
        fields.append("status")
    dataset.save(update_fields=fields)
    return report
