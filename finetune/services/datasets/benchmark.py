"""The vicov19qa benchmark as a training source (research use only: read from
its path, never copied; search.evaluation.corpus is the one reader of it).

Every (question, answer) row of the train file is a pair; the answer passage is
the pair's document, so one passage never lands in both splits. A val file, when
given, goes to the eval split whole (the benchmark's own held-out questions, for
early stopping); a train question whose answer is also a val answer follows it
to eval. The test split is refused: it is what the fine-tuned model is measured on.
"""
from __future__ import annotations

from pathlib import Path

from django.utils.translation import gettext as _

from finetune.models import PairSource, Split
from finetune.services.datasets.records import PairRecord, SourceError
from finetune.services.texts import clean, passage_key
from search.evaluation.corpus import DatasetError, load_vicov19qa, split_of

NAME = "vicov19qa"


def default_train_path() -> Path:
    from search.evaluation.corpus import default_dataset_path

    return default_dataset_path() / "UIT-ViCoV19QA_train.csv"


def default_val_path() -> Path:
    from search.evaluation.corpus import default_dataset_path

    return default_dataset_path() / "UIT-ViCoV19QA_val.csv"


def _read(path: Path, wanted: str):
    path = Path(path)
    if not path.is_file():
        raise SourceError(str(path), [_("no such file")])
    found = split_of(path)
    if found != wanted:
        raise SourceError(str(path), [
            _("its name says it is the %(found)s split, %(wanted)s was expected (fine-tuning uses train, and val "
              "for early stopping; never test)") % {"found": found, "wanted": wanted}])
    try:
        return load_vicov19qa([path])
    except (DatasetError, ValueError) as exc:
        raise SourceError(str(path), [str(exc)]) from None


def benchmark_records(train_path: str | Path, val_path: str | Path | None = None) -> tuple[list[PairRecord], dict]:
    report = {"source": str(PairSource.BENCHMARK), "name": NAME, "files": []}
    records: list[PairRecord] = []
    for path, split, fixed in ((train_path, "train", None), (val_path, "val", Split.EVAL)):
        if path is None:
            continue
        corpus = _read(Path(path), split)
        report["files"].append(str(Path(path).resolve()))
        questions = corpus.questions(split)
        report[f"{split}_questions"] = len(questions)
        for query, relevant in questions:
            for idx in relevant:
                passage = clean(corpus.passages[idx])
                # public research data: level 0
                records.append(PairRecord(query=clean(query), positive=passage, source=PairSource.BENCHMARK,
                                          doc_key=passage_key(passage), access_level=0, fixed_split=fixed))
    report["pairs"] = len(records)
    return records, report
