"""manage.py import_eval_set NAME [FILE.jsonl | --from-feedback] [--replace] [--validate-as USER]"""
from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from search.evaluation import sets
from search.evaluation.models import EvaluationSet


class Command(BaseCommand):
    help = "Create an evaluation set from eval_pairs.jsonl or from search feedback, and validate it."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("path", nargs="?", help="eval_pairs.jsonl")
        parser.add_argument("--from-feedback", action="store_true", help="helpful votes and clicks → items")
        parser.add_argument("--level", choices=["document", "chunk"], default="document",
                            help="relevance level of items built from feedback")
        parser.add_argument("--replace", action="store_true", help="replace a set of the same name")
        parser.add_argument("--validate-as", metavar="USERNAME",
                            help="report items whose relevant document this user cannot see")

    def handle(self, name, path=None, from_feedback=False, level="document", replace=False, validate_as=None,
               **opts):
        if EvaluationSet.objects.filter(name=name).exists() and not replace:
            raise CommandError(f"A set named {name!r} exists (use --replace).")
        user = None
        if validate_as:
            user = get_user_model().objects.filter(username=validate_as).first()
            if user is None:
                raise CommandError(f"No user {validate_as!r}.")
        if from_feedback:
            evaluation_set = sets.build_from_feedback(name, level=level, replace=replace)
        elif path:
            evaluation_set = sets.import_jsonl(name, path, replace=replace)
        else:
            raise CommandError("Give a JSONL file or --from-feedback.")
        report = evaluation_set.import_report
        self.stdout.write(f"set {name}: {report.get('items', 0)} items ({report.get('usable', 0)} usable) "
                          f"from {report.get('lines', 0)} lines")
        for key in ("problems", "empty_queries", "duplicates", "unresolved", "multi_match"):
            if report.get(key):
                self.stdout.write(self.style.WARNING(f"  {key}: {len(report[key])}"))
                for entry in report[key][:10]:
                    self.stdout.write(f"    {json.dumps(entry, ensure_ascii=False)[:300]}")
        findings = sets.validate(evaluation_set, user)
        self.stdout.write(f"validation{' as ' + validate_as if validate_as else ' (anonymous view)'}: "
                          + ("ok" if findings["ok"] else ", ".join(f"{k} {len(v)}" for k, v in findings.items()
                                                                   if isinstance(v, list) and v)))
