"""manage.py evaluate_corpus --csv PATH [--csv …] --format vicov19qa [--model PATH_OR_SPACE]
[--mode vector --mode keyword --mode hybrid] [--calibrate-on VAL_CSV|val] [--name REPORT]

Builds a throwaway corpus from a question/answer file in a scratch database
(eval_scratch_<pid>, dropped at the end) and evaluates it; the portal's
documents are never touched. The summary rows are recorded afterwards in the
portal's evaluation history (space "<model> (scratch)")."""
from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from search.evaluation import corpus as qa
from search.evaluation import report, runner
from search.evaluation.models import EvaluationRun, RunStatus
from search.evaluation.scratch import scratch_database
from search.models import EmbeddingSpace, SearchMode


class Command(BaseCommand):
    help = "Evaluate retrieval on an external question/answer benchmark (throwaway corpus, scratch database)."

    def add_arguments(self, parser):
        parser.add_argument("--csv", action="append", default=[],
                            help="a folder with the splits or the split files (default ../shared/datasets/vicov19qa)")
        parser.add_argument("--format", default="vicov19qa", choices=qa.FORMATS)
        parser.add_argument("--model", help="model folder or space name (default: the active space's model, "
                                            "else all-MiniLM-L6-v2)")
        parser.add_argument("--mode", action="append", default=[], choices=list(SearchMode.values))
        parser.add_argument("--split", default="test", help="split whose questions are evaluated")
        parser.add_argument("--calibrate-on", help="CSV whose questions calibrate hybrid fusion first "
                                                   "(or a split name, e.g. 'val')")
        parser.add_argument("--depth", type=int, default=100)
        parser.add_argument("--limit", type=int, help="evaluate only the first N questions (smoke runs)")
        parser.add_argument("--name", help="report folder name")
        parser.add_argument("--no-record", action="store_true", help="do not add the runs to the portal's history")

    def handle(self, csv, format, model=None, mode=(), split="test", calibrate_on=None, depth=100, limit=None,
               name=None, no_record=False, **opts):
        paths = csv or [str(qa.default_dataset_path())]
        data = qa.load_vicov19qa(paths + ([calibrate_on] if calibrate_on and Path(calibrate_on).exists() else []))
        queries = data.queries.get(split, [])[:limit] if limit else data.queries.get(split, [])
        if not queries:
            raise CommandError(f"no {split!r} questions in {', '.join(data.files)}")
        calibration_queries = []
        if calibrate_on:
            cal_split = qa._split_of(Path(calibrate_on)) if Path(calibrate_on).exists() else calibrate_on
            calibration_queries = data.queries.get(cal_split, [])
            if not calibration_queries or cal_split == split:
                raise CommandError(f"no calibration questions for {calibrate_on!r} (or it is the evaluated split)")
        modes = mode or [SearchMode.VECTOR, SearchMode.KEYWORD, SearchMode.HYBRID]
        model_path, model_label = self._model(model)
        needs_vectors = any(m != SearchMode.KEYWORD for m in modes)
        name = name or f"{format}-{Path(model_path).name}-{timezone.now():%Y%m%d-%H%M%S}"
        self.stdout.write(f"{format}: {len(data.answers)} passages, {len(queries)} {split} questions"
                          + (f", {len(calibration_queries)} calibration questions" if calibration_queries else "")
                          + f"; model {model_path}")
        summaries = []
        with scratch_database() as db:
            self.stdout.write(f"scratch database {db}")
            from search.services import keyword_index

            chunk_ids = qa.build_documents(data.answers, prefix=format.upper())
            started = time.perf_counter()
            keyword_index.rebuild()
            self.stdout.write(f"keyword index: {time.perf_counter() - started:.1f}s")
            space, corpus_perf = None, {}
            if needs_vectors:
                space, corpus_perf = qa.prepare_space(model_path, name="benchmark",
                                                      progress=self._progress("embedding"))
                self.stdout.write(f"\nembedded {corpus_perf['corpus_passages']} passages in "
                                  f"{corpus_perf['corpus_encode_s']}s ({corpus_perf['encode_passages_per_s']}/s)")
            evaluation_set = qa.make_set(f"{format}-{split}", queries, chunk_ids)
            extra = {"benchmark": {"format": format, "files": data.files, "passages": len(data.answers),
                                   "split": split, "queries": len(queries), "model": model_path}}
            if calibration_queries and space is not None and SearchMode.HYBRID in modes:
                from search.evaluation import calibration

                cal_set = qa.make_set(f"{format}-calibration", calibration_queries, chunk_ids)

                record = calibration.calibrate(cal_set, space, eval_depth=depth,
                                               progress=self._progress("calibration retrieval"))
                self.stdout.write("\n" + calibration.curve_table(record))
                extra["calibration"] = record
                space.refresh_from_db()
            runs = []
            for md in modes:
                run = runner.evaluate(evaluation_set, space, md,
                                      depth=depth, name=name, performance=corpus_perf if md != "keyword" else None,
                                      progress=self._progress(md))
                run.space_name = model_label if md != SearchMode.KEYWORD else "bm25"
                run.save(update_fields=["space_name"])
                self.stdout.write(f"\n{md:8} " + self._fmt(run))
                runs.append(run)
            self._compare_hybrid(runs)
            out = report.write_report(runs, name, title=f"{format} ({split}) — {model_label}", extra=extra)
            summaries = [report.run_summary(EvaluationRun.objects.get(pk=r.pk), with_queries=False) for r in runs]
        self.stdout.write(self.style.SUCCESS(f"report: {out / 'report.html'}\n        {out / 'performance_metrics.json'}"))
        if not no_record:
            for s in summaries:
                EvaluationRun.objects.create(
                    name=name, set_name=f"{format}:{split}", space_name=f"{s['space']} (scratch)",
                    model_path=model_path, mode=s["mode"], depth=depth, status=RunStatus.DONE, progress=100,
                    metrics=s["metrics"], performance=s["performance"], mrr_at_10=s["metrics"].get("MRR@10"),
                    hit_at_1=s["metrics"].get("Hit@1"), query_count=s["queries"], report_dir=str(out),
                    status_message="external benchmark (scratch database)", finished_at=timezone.now())

    def _model(self, spec):
        if spec:
            space = EmbeddingSpace.objects.filter(name=spec).first()
            if space is not None:
                return space.model_path, space.name
            if not Path(spec).is_dir():
                raise CommandError(f"{spec!r} is neither a space nor a model folder")
            return str(Path(spec).resolve()), Path(spec).name
        from search.services.spaces import active_space

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
