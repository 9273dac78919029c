"""manage.py evaluate_answers [--set samples] [--unanswerable FILE] [--mode extracted|generated …]
[--answer-floor space|off|VALUE …] [--as-user U] [--name REPORT] [--json OUT] [--html OUT]

`--answer-floor off --answer-floor space` measures the same questions without
and with the space's answer floor (answers.services.support) in one run."""
from __future__ import annotations

import argparse
import shutil

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from answers.services import evaluation
from answers.services.evidence import SPACE
from answers.services.evaluation_report import write_report
from search.evaluation.models import EvaluationSet
from search.services.spaces import active_space

SHOWN = ("answered_rate", "citation_precision", "first_citation_right", "reference_contained", "refusal_rate",
         "fallbacks", "latency_p50_ms", "latency_p95_ms", "first_token_p50_ms", "first_token_p95_ms")


def answer_floor_choice(text: str):
    """space → the space's own answer floor; off → none (the relevance floors alone); a number → that floor."""
    if text in ("space", "off"):
        return SPACE if text == "space" else None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("space, off or a number") from None


class Command(BaseCommand):
    help = ("Answer the questions of an evaluation set (and unanswerable ones) in each answer mode; report citation "
            "precision, reference containment, answered and refusal rates, latency.")

    def add_arguments(self, parser):
        parser.add_argument("--set", dest="set_name", default="samples")
        parser.add_argument("--unanswerable", help="JSONL of {\"query\"} no document answers (default for the "
                                                   "sample sets: documents/samples/unanswerable.jsonl)")
        parser.add_argument("--mode", action="append", default=[], choices=[evaluation.EXTRACTED,
                                                                           evaluation.GENERATED],
                            help="repeatable; default extracted, and generated when a chat endpoint is configured")
        parser.add_argument("--answer-floor", action="append", type=answer_floor_choice, default=[],
                            help="repeatable: space (default: the space's own), off (the relevance floors alone) "
                                 "or a value; each is measured in each mode")
        parser.add_argument("--as-user", help="ask as this user (default: the first active superuser: every document)")
        parser.add_argument("--name", help="report folder name (default: answers-<set>-<time>)")
        parser.add_argument("--json", dest="json_out", help="also copy performance_metrics.json here")
        parser.add_argument("--html", dest="html_out", help="also copy report.html here")

    def handle(self, set_name, unanswerable=None, mode=(), as_user=None, name=None, json_out=None, html_out=None,
               answer_floor=(), **opts):
        evaluation_set = EvaluationSet.objects.filter(name=set_name).first()
        if evaluation_set is None:
            raise CommandError(f"No evaluation set {set_name!r} (load_samples imports `samples`; import_eval_set "
                               f"imports others).")
        users = get_user_model().objects.filter(is_active=True)
        user = users.filter(username=as_user).first() if as_user else users.filter(is_superuser=True) \
            .order_by("pk").first()
        if user is None:
            raise CommandError(f"No user {as_user!r}." if as_user else "No active superuser: name one with --as-user.")
        modes = list(dict.fromkeys(mode)) or evaluation.available_modes()
        if evaluation.GENERATED in modes and evaluation.GENERATED not in evaluation.available_modes():
            raise CommandError("--mode generated needs a chat endpoint: set PORTAL_ANSWER_CHAT_URL and "
                               "PORTAL_ANSWER_CHAT_MODEL.")
        cases = evaluation.cases_from_set(evaluation_set, unanswerable)
        answerable = sum(c.answerable for c in cases)
        space = active_space()
        self.stdout.write(f"{set_name}: {answerable} answerable questions "
                          f"({sum(bool(c.reference) for c in cases)} with a reference span), "
                          f"{len(cases) - answerable} unanswerable; as {user.username}; space "
                          f"{space.name if space else '(none: keywords only)'}; modes {', '.join(modes)}")
        results = []
        floors = list(dict.fromkeys(answer_floor)) or [SPACE]
        for md in modes:
            for floor in floors:
                with tqdm(total=len(cases), desc=md, unit="question", file=self.stdout) as bar:
                    results.append(evaluation.evaluate_mode(cases, md, user, answer_floor=floor,
                                                            progress=lambda done, total: bar.update(done - bar.n)))
                summary = results[-1]["summary"]
                self.stdout.write(f"  {results[-1]['label']}: " + "  ".join(f"{k} {summary[k]}" for k in SHOWN))
        name = name or f"answers-{set_name}-{timezone.now():%Y%m%d-%H%M%S}"
        meta = {"set": set_name, "as_user": user.username, "space": space.name if space else None,
                "space_answer_floor": space.answer_floor if space else None,
                "unanswerable_file": str(evaluation.unanswerable_file(evaluation_set, unanswerable) or "")}
        out = write_report(results, name, title=f"Answers on {set_name}", meta=meta)
        for wanted, produced in ((json_out, "performance_metrics.json"), (html_out, "report.html")):
            if wanted:
                shutil.copyfile(out / produced, wanted)
        self.stdout.write(self.style.SUCCESS(f"report: {out / 'report.html'}\n        {out / 'performance_metrics.json'}"))
