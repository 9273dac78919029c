"""manage.py evaluate_corpus [--csv PATH …] [--format vicov19qa|jsonl] [--pairs PATH … --corpus PATH]
[--model PATH_OR_SPACE] [--mode vector --mode keyword --mode hybrid] [--split test]
[--calibrate-on val] [--floors SIM,KEYWORD,SEMANTIC] [--limit N] [--name REPORT] [--no-record]

Builds a throwaway corpus from a question/passage dataset (formats in
search/evaluation/corpus.py and docs/evaluation.md) in a scratch database
(eval_scratch_<pid>, dropped at the end) and evaluates it; the portal's
documents are never touched. With --calibrate-on, the space's relevance floors
and hybrid fusion are calibrated on that split first (never on the evaluated
one); --floors then sets the floors given (e.g. those calibrated on the sample
corpus) to measure how they carry over. The summary rows are recorded afterwards in the portal's evaluation
history (space "<model> (scratch)") unless --no-record."""
from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from search.evaluation import corpus as qa
from search.evaluation import report, runner
from search.evaluation.scratch import DatabaseNotReady, require_migrated_database, scratch_database
from search.models import SearchMode
from search.services.modes import MODES, needs_space


FLOOR_FIELDS = ("similarity_floor", "keyword_floor", "semantic_only_floor")


def _floors(value: str) -> tuple:
    parts = value.split(",")
    if len(parts) != len(FLOOR_FIELDS):
        raise ValueError("three values: similarity, keyword, semantic-only")
    return tuple(None if part.strip() in ("", "-") else float(part) for part in parts)


class Command(BaseCommand):
    help = "Evaluate retrieval on an external question/passage benchmark (throwaway corpus, scratch database)."
    requires_migrations_checks = False  # checked below, with a message that says what to do

    def add_arguments(self, parser):
        parser.add_argument("--csv", action="append", default=[],
                            help="vicov19qa format: a folder with the split files, or the files "
                                 "(default ../shared/datasets/vicov19qa)")
        parser.add_argument("--format", default=None, choices=qa.FORMATS,
                            help="vicov19qa (CSV) or jsonl (--pairs and --corpus); default: from the options given")
        parser.add_argument("--pairs", action="append", default=[],
                            help="jsonl format: eval_pairs-style files (or a folder of them)")
        parser.add_argument("--corpus", help="jsonl format: the corpus file ({id, text, title?} a line)")
        parser.add_argument("--model", help="model folder or space name (default: the active space's model, "
                                            "else all-MiniLM-L6-v2)")
        parser.add_argument("--mode", action="append", default=[], choices=list(MODES))
        parser.add_argument("--split", default="test", help="split whose questions are evaluated")
        parser.add_argument("--calibrate-on", help="split (e.g. 'val') or file whose questions calibrate the "
                                                   "floors and hybrid fusion first")
        parser.add_argument("--floors", type=_floors, metavar="SIM,KEYWORD,SEMANTIC",
                            help="evaluate with these relevance floors (after any calibration; '-' leaves one "
                                 "unset): how floors calibrated on other documents do on this corpus")
        parser.add_argument("--depth", type=int, default=100)
        parser.add_argument("--limit", type=int, help="evaluate only the first N questions (smoke runs)")
        parser.add_argument("--name", help="report folder name")
        parser.add_argument("--no-record", action="store_true", help="do not add the runs to the portal's history")

    def handle(self, csv, format=None, pairs=(), corpus=None, model=None, mode=(), split="test",
               calibrate_on=None, floors=None, depth=100, limit=None, name=None, no_record=False, **opts):
        format = format or ("jsonl" if pairs or corpus else "vicov19qa")
        modes = list(dict.fromkeys(mode or [SearchMode.VECTOR, SearchMode.KEYWORD, SearchMode.HYBRID]))
        try:
            runner.check_modes(modes)
        except ValueError as exc:
            raise CommandError(str(exc))
        uses_portal_db = not no_record or not (model and Path(model).is_dir())
        if uses_portal_db:
            try:
                require_migrated_database()
            except DatabaseNotReady as exc:
                raise CommandError(f"{exc} (or pass --no-record and --model PATH to leave it alone).")
        data = self._load(format, csv, pairs, corpus, calibrate_on)
        queries = data.questions(split, limit)
        if not queries:
            raise CommandError(f"no {split!r} questions in {', '.join(data.files)}")
        calibration_queries = []
        if calibrate_on:
            cal_split = qa.split_of(Path(calibrate_on)) if Path(calibrate_on).exists() else calibrate_on
            calibration_queries = data.questions(cal_split)
            if not calibration_queries or cal_split == split:
                raise CommandError(f"no calibration questions for {calibrate_on!r} (or it is the evaluated split)")
        model_path, model_label = self._model(model)
        needs_vectors = any(needs_space(m) for m in modes)
        name = name or f"{format}-{Path(model_path).name}-{timezone.now():%Y%m%d-%H%M%S}"
        relevant = sum(len(r) for _, r in queries)
        self.stdout.write(
            f"{format}: {len(data.passages)} passages ({data.distractors} distractors), {len(queries)} {split} "
            f"questions with {relevant} relevant passages"
            + (f", {len(calibration_queries)} calibration questions" if calibration_queries else "")
            + f"; model {model_path}")
        if SearchMode.HYBRID in modes and not calibration_queries:
            self.stdout.write(self.style.WARNING(
                "hybrid is not calibrated (no --calibrate-on): the scratch space's default fusion and no floors"))
        with scratch_database() as db:
            self.stdout.write(f"scratch database {db}")
            out, summaries = self._evaluate(data, format, queries, calibration_queries, split, modes, model_path,
                                            model_label, needs_vectors, depth, name, floors)
        self.stdout.write(self.style.SUCCESS(f"report: {out / 'report.html'}\n        {out / 'performance_metrics.json'}"))
        if not no_record:
            runner.record_external(summaries, name=name, set_name=f"{format}:{split}", model_path=model_path,
                                   depth=depth, report_dir=out)

    def _load(self, format, csv, pairs, corpus, calibrate_on) -> qa.QACorpus:
        extra = [calibrate_on] if calibrate_on and Path(calibrate_on).exists() else []
        try:
            if format == "jsonl":
                if not pairs or not corpus:
                    raise CommandError("the jsonl format needs --pairs and --corpus")
                return qa.load_jsonl(list(pairs) + extra, corpus)
            return qa.load_vicov19qa((csv or [str(qa.default_dataset_path())]) + extra)
        except (qa.DatasetError, FileNotFoundError) as exc:
            raise CommandError(f"cannot read the dataset: {exc}")

    def _evaluate(self, data, format, queries, calibration_queries, split, modes, model_path, model_label,
                  needs_vectors, depth, name, given_floors=None):
        from search.evaluation.models import EvaluationRun
        from search.services import keyword_engine

        chunk_ids = qa.build_documents(data.passages, prefix=format.upper(), titles=data.titles)
        started = time.perf_counter()
        keyword_engine.rebuild()
        self.stdout.write(f"keyword index ({settings.KEYWORD_ENGINE}): {time.perf_counter() - started:.1f}s")
        space, corpus_perf = None, {}
        if needs_vectors:
            space, corpus_perf = qa.prepare_space(model_path, name="benchmark", progress=self._progress("embedding"),
                                                  passages=data.passages, chunk_ids=chunk_ids)
            if "vectors_from_cache" in corpus_perf:
                self.stdout.write(f"vectors of {corpus_perf['corpus_passages']} passages from "
                                  f"{corpus_perf['vectors_from_cache']}")
            else:
                self.stdout.write(f"\nembedded {corpus_perf['corpus_passages']} passages in "
                                  f"{corpus_perf['corpus_encode_s']}s ({corpus_perf['encode_passages_per_s']}/s)")
        evaluation_set = qa.make_set(f"{format}-{split}", queries, chunk_ids)
        extra = {"benchmark": {"format": format, "files": data.files, "passages": len(data.passages),
                               "distractors": data.distractors, "split": split, "queries": len(queries),
                               "model": model_path, "keyword_engine": settings.KEYWORD_ENGINE}}
        if calibration_queries and space is not None:
            from search.evaluation import calibration, floors

            cal_set = qa.make_set(f"{format}-calibration", calibration_queries, chunk_ids)
            floors_record = floors.calibrate_floors(cal_set, space, progress=self._progress("floors"))
            self.stdout.write("\n" + floors.floors_table(floors_record))
            if SearchMode.HYBRID in modes or SearchMode.RERANK in modes:
                record = calibration.calibrate(cal_set, space, eval_depth=depth,
                                               progress=self._progress("calibration retrieval"))
                self.stdout.write("\n" + calibration.curve_table(record))
                extra["calibration"] = record
            extra["floors"] = floors_record
            space.refresh_from_db()
        if given_floors and space is not None:
            fields = dict(zip(FLOOR_FIELDS, given_floors))
            for field, value in fields.items():
                setattr(space, field, value)
            space.save(update_fields=list(fields))
            extra["floors_given"] = fields
            self.stdout.write(f"\nfloors set as given: {fields}")
        runs = []
        for md in modes:
            run = runner.evaluate(evaluation_set, space, md, depth=depth, name=name,
                                  performance=corpus_perf if needs_space(md) else None, progress=self._progress(md))
            run.space_name = model_label if needs_space(md) else "bm25"
            run.save(update_fields=["space_name"])
            self.stdout.write(f"\n{md:8} " + self._fmt(run))
            runs.append(run)
        self._compare_hybrid(runs)
        out = report.write_report(runs, name, title=f"{format} ({split}) — {model_label}", extra=extra)
        return out, [report.run_summary(EvaluationRun.objects.get(pk=r.pk), with_queries=False) for r in runs]

    def _model(self, spec):
        if spec and Path(spec).is_dir():
            return str(Path(spec).resolve()), Path(spec).name
        from search.models import EmbeddingSpace
        from search.services.spaces import active_space

        if spec:
            space = EmbeddingSpace.objects.filter(name=spec).first()
            if space is None:
                raise CommandError(f"{spec!r} is neither a space nor a model folder")
            return space.model_path, space.name
        space = active_space()
        if space is not None:
            return space.model_path, space.name
        from documents.services.tokens import default_model_path

        path = default_model_path()
        return str(path), Path(path).name

    def _progress(self, label):
        last = [0.0]

        def show(done, total):
            now = time.monotonic()
            if now - last[0] > 2 or done == total:
                last[0] = now
                self.stdout.write(f"\r{label}: {done}/{total}", ending="")
                self.stdout.flush()
        return show

    @staticmethod
    def _fmt(run) -> str:
        from search.management.commands.evaluate import format_metrics

        return format_metrics(run)

    def _compare_hybrid(self, runs):
        by_mode = {r.mode: r for r in runs}
        if SearchMode.HYBRID not in by_mode:
            return
        singles = [by_mode[m] for m in (SearchMode.VECTOR, SearchMode.KEYWORD) if m in by_mode]
        if not singles:
            return
        best = max(singles, key=lambda r: r.mrr_at_10 or 0)
        hybrid = by_mode[SearchMode.HYBRID]
        diff = (hybrid.mrr_at_10 or 0) - (best.mrr_at_10 or 0)
        style = self.style.SUCCESS if diff >= 0 else self.style.WARNING
        self.stdout.write(style(f"hybrid MRR@10 {hybrid.mrr_at_10:.4f} vs best single mode ({best.mode}) "
                                f"{best.mrr_at_10:.4f}: {diff:+.4f}"))
