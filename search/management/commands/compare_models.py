"""manage.py compare_models --set NAME --model PATH_OR_SPACE --model … [--mode vector] [--as-user U]"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from search.evaluation import compare, report
from search.evaluation.models import EvaluationSet
from search.models import SearchMode
from search.services.modes import MODES


class Command(BaseCommand):
    help = ("Evaluate several models side by side (MRR, Hit@1, time, memory, dimension, storage) and "
            "recommend one. A model folder gets a temporary space that is removed afterwards.")

    def add_arguments(self, parser):
        parser.add_argument("--set", dest="set_name", required=True)
        parser.add_argument("--model", action="append", required=True, help="space name or model folder")
        parser.add_argument("--mode", default=SearchMode.VECTOR, choices=list(MODES))
        parser.add_argument("--as-user")
        parser.add_argument("--depth", type=int, default=100)
        parser.add_argument("--name", help="report folder name")

    def handle(self, set_name, model, mode, as_user=None, depth=100, name=None, **opts):
        evaluation_set = EvaluationSet.objects.filter(name=set_name).first()
        if evaluation_set is None:
            raise CommandError(f"No evaluation set {set_name!r}.")
        user = get_user_model().objects.filter(username=as_user).first() if as_user else None
        name = name or f"compare-{set_name}-{timezone.now():%Y%m%d-%H%M%S}"
        try:
            runs, comparison = compare.compare(evaluation_set, model, mode=mode, user=user, depth=depth, name=name,
                                               log=self.stdout.write)
        except ValueError as e:
            raise CommandError(str(e))
        widths = [max(len(str(c)), *(len(str(r[i])) for r in comparison["rows"]))
                  for i, c in enumerate(comparison["columns"])]
        self.stdout.write("  ".join(str(c).rjust(w) for c, w in zip(comparison["columns"], widths)))
        for row in comparison["rows"]:
            self.stdout.write("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))
        self.stdout.write(self.style.SUCCESS(f"recommended: {comparison['recommendation']}"))
        for reason in comparison["reasons"]:
            self.stdout.write(f"  - {reason}")
        out = report.write_report(runs, name, title=f"Model comparison on {set_name}",
                                  extra={"comparison": comparison})
        self.stdout.write(f"report: {out / 'report.html'}")
