"""manage.py export_eval_set NAME [--out FILE.jsonl]"""
from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from search.evaluation import sets
from search.evaluation.models import EvaluationSet


class Command(BaseCommand):
    help = "Write an evaluation set as eval_pairs.jsonl (stdout by default)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--out", help="file to write (default: stdout)")

    def handle(self, name, out=None, **opts):
        evaluation_set = EvaluationSet.objects.filter(name=name).first()
        if evaluation_set is None:
            raise CommandError(f"No evaluation set {name!r}.")
        if out:
            n = sets.export_jsonl(evaluation_set, out)
            self.stderr.write(f"{n} items → {out}")
        else:
            for record in sets.export_records(evaluation_set):
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
