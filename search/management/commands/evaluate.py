"""manage.py evaluate --set NAME --space S [--space T …] --mode vector|keyword|hybrid|rerank […]
[--as-user U] [--depth 100] [--name REPORT]"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from search.evaluation import report, runner
from search.evaluation.models import EvaluationSet
from search.models import EmbeddingSpace, SearchMode
from search.services.modes import MODES, needs_space
from search.services.spaces import active_space


def format_metrics(run) -> str:
    mt, p = run.metrics, run.performance
    keys = ("MRR@10", "Hit@1", "Hit@5", "Hit@10", "nDCG@10", "MAP@10", "Recall@100")
    return ("  ".join(f"{k} {mt[k]:.4f}" for k in keys if k in mt)
            + f"  | p50 {p.get('latency_p50_ms')} ms p95 {p.get('latency_p95_ms')} ms")


class Command(BaseCommand):
    help = "Evaluate retrieval on an evaluation set for one or more spaces and modes; writes a report."

    def add_arguments(self, parser):
        parser.add_argument("--set", dest="set_name", required=True)
        parser.add_argument("--space", action="append", default=[], help="space name (repeatable; default: active)")
        parser.add_argument("--mode", action="append", default=[], choices=list(MODES),
                            help="repeatable; default hybrid")
        parser.add_argument("--as-user", help="evaluate with this user's access (default: every ready document)")
        parser.add_argument("--depth", type=int, default=100, help="results retrieved per query")
        parser.add_argument("--name", help="report folder name (default: eval-<set>-<time>)")

    def handle(self, set_name, space, mode, as_user=None, depth=100, name=None, **opts):
        evaluation_set = EvaluationSet.objects.filter(name=set_name).first()
        if evaluation_set is None:
            raise CommandError(f"No evaluation set {set_name!r} (import one with import_eval_set).")
        user = None
        if as_user:
            user = get_user_model().objects.filter(username=as_user).first()
            if user is None:
                raise CommandError(f"No user {as_user!r}.")
        chosen = []
        for space_name in space:
            s = EmbeddingSpace.objects.filter(name=space_name).first()
            if s is None:
                raise CommandError(f"No space {space_name!r}.")
            chosen.append(s)
        if not chosen:
            chosen = [active_space()]
        modes = mode or [SearchMode.HYBRID]
        try:
            runner.check_modes(modes)
        except ValueError as exc:
            raise CommandError(str(exc))
        name = name or f"eval-{set_name}-{timezone.now():%Y%m%d-%H%M%S}"
        runs = []
        for s in chosen:
            for md in modes:
                if s is None and needs_space(md):
                    raise CommandError("No active space: name one with --space, or use --mode keyword.")
                self.stdout.write(f"{s.name if s else '(no space)'} · {md}: {evaluation_set.items.count()} items")
                run = runner.evaluate(evaluation_set, s, md, as_user=user, depth=depth, name=name)
                self.stdout.write(f"  {format_metrics(run)}"
                                  + (f"  ({run.skipped} unresolved items skipped)" if run.skipped else ""))
                runs.append(run)
        out = report.write_report(runs, name, title=f"Evaluation of {set_name}")
        self.stdout.write(self.style.SUCCESS(f"report: {out / 'report.html'}\n        {out / 'performance_metrics.json'}"))
