"""manage.py calibrate_answers [--set samples] [--answerable FILE] [--unanswerable FILE] [--as-user U] [--dry-run]

Calibrates the active space's answer floor (answers.services.support) on
answerable questions — an evaluation set's and a file's — and a file of
questions no document answers. For the `samples` set the files default to
documents/samples/answerable_calibration.jsonl and
documents/samples/unanswerable_calibration.jsonl; never on the guard set or
documents/samples/unanswerable.jsonl, which evaluate_answers holds out."""
from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from answers.services import answer_calibration as ac
from answers.services import evaluation
from search.evaluation.models import EvaluationSet
from search.evaluation.samples import CALIBRATION_SET, GUARD_SET


class Command(BaseCommand):
    help = ("Calibrate the active space's answer floor: the threshold below which an answer says \"not found\" "
            "although passages passed the relevance floors.")

    def add_arguments(self, parser):
        parser.add_argument("--set", dest="set_name", default=CALIBRATION_SET,
                            help="evaluation set of answerable questions (\"none\": only --answerable)")
        parser.add_argument("--answerable", help="JSONL of {\"query\"} more answerable questions (default for the "
                                                 "samples set: documents/samples/answerable_calibration.jsonl)")
        parser.add_argument("--unanswerable", help="JSONL of {\"query\"} no document answers (default for the "
                                                   "samples set: documents/samples/unanswerable_calibration.jsonl)")
        parser.add_argument("--as-user", help="ask as this user (default: the first active superuser: every document)")
        parser.add_argument("--dry-run", action="store_true", help="show the choice, store nothing")

    def handle(self, set_name, answerable=None, unanswerable=None, as_user=None, dry_run=False, **opts):
        if set_name == GUARD_SET:
            raise CommandError(f"{GUARD_SET} is the guard set: never calibrated on.")
        evaluation_set = None
        if set_name != "none":
            evaluation_set = EvaluationSet.objects.filter(name=set_name).first()
            if evaluation_set is None:
                raise CommandError(f"No evaluation set {set_name!r} (load_samples imports `samples`).")
        if set_name == CALIBRATION_SET:
            answerable = answerable or str(ac.SAMPLE_ANSWERABLE_CALIBRATION)
            unanswerable = unanswerable or str(ac.SAMPLE_UNANSWERABLE_CALIBRATION)
        if unanswerable is None:
            raise CommandError("Name the unanswerable questions to calibrate on with --unanswerable FILE.")
        if Path(unanswerable).resolve() == evaluation.SAMPLE_UNANSWERABLE.resolve():
            raise CommandError(f"{unanswerable} is held out for evaluate_answers: calibrate on another file.")
        users = get_user_model().objects.filter(is_active=True)
        user = users.filter(username=as_user).first() if as_user else users.filter(is_superuser=True) \
            .order_by("pk").first()
        if user is None:
            raise CommandError(f"No user {as_user!r}." if as_user else "No active superuser: name one with --as-user.")
        questions = (ac.set_questions(evaluation_set) if evaluation_set else []) + \
            ([c.query for c in evaluation.read_unanswerable(answerable)] if answerable else [])
        refused = [c.query for c in evaluation.read_unanswerable(unanswerable)]
        inputs = {"set": set_name if evaluation_set else "", "answerable_file": answerable or "",
                  "unanswerable_file": unanswerable}
        with tqdm(total=len(questions) + len(refused), desc="answer floor", unit="question", file=self.stdout) as bar:
            try:
                record = ac.calibrate_answer_floor(questions, refused, user=user, save=not dry_run, inputs=inputs,
                                                   progress=lambda done, total: bar.update(done - bar.n))
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(ac.answer_floor_table(record))
        self.stdout.write("dry run: nothing stored" if dry_run else
                          self.style.SUCCESS(f"stored on space {record['space']}"))
