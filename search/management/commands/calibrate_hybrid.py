"""manage.py calibrate_hybrid [--space S] --set NAME [--metric MRR@10] [--no-floors] [--wait-for-vectors SECONDS]
[--dry-run]

Calibrates a space on an evaluation set: first its relevance floors (when a
search says "nothing found"; search.evaluation.floors), then its hybrid fusion
(search.evaluation.calibration), with the floors applied as a search applies
them."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from search.evaluation import calibration, floors, report
from search.evaluation.models import EvaluationSet
from search.models import EmbeddingSpace


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


class Command(BaseCommand):
    help = ("Calibrate a space on an evaluation set: its relevance floors, then its hybrid fusion (a robust rank "
            "fusion unless the grid's best point wins beyond a bootstrap confidence interval).")

    def add_arguments(self, parser):
        parser.add_argument("--space", help="space name (default: the active space)")
        parser.add_argument("--set", dest="set_name", required=True)
        parser.add_argument("--as-user")
        parser.add_argument("--metric", default="MRR@10", choices=["MRR@10", "nDCG@10", "Hit@1", "Hit@10"])
        parser.add_argument("--shares", type=_floats, default=calibration.VECTOR_SHARES,
                            help="vector weight shares, comma-separated (0 and 1 are always added)")
        parser.add_argument("--rrf-k", type=_ints, default=calibration.RRF_KS)
        parser.add_argument("--depths", type=_ints, default=calibration.DEPTHS, help="candidate depths")
        parser.add_argument("--no-floors", action="store_true", help="keep the space's floors as they are")
        parser.add_argument("--wait-for-vectors", type=float, default=0, metavar="SECONDS",
                            help="first wait (at most this long) until every chunk of a ready document has a "
                                 "vector in the space, e.g. right after loading documents")
        parser.add_argument("--dry-run", action="store_true", help="show the curve, store nothing")
        parser.add_argument("--name", help="report folder name")

    def handle(self, space, set_name, as_user=None, metric="MRR@10", shares=(), rrf_k=(), depths=(),
               dry_run=False, name=None, no_floors=False, wait_for_vectors=0, **opts):
        from search.services.spaces import active_space

        target = EmbeddingSpace.objects.filter(name=space).first() if space else active_space()
        if target is None:
            raise CommandError(f"No space {space!r}." if space else "No active space: name one with --space.")
        if wait_for_vectors and not self._wait_for_vectors(target, wait_for_vectors):
            raise CommandError(f"Vectors of space {target.name} still missing after {wait_for_vectors:.0f}s: "
                               "is a worker running? Nothing was calibrated.")
        evaluation_set = EvaluationSet.objects.filter(name=set_name).first()
        if evaluation_set is None:
            raise CommandError(f"No evaluation set {set_name!r}.")
        user = get_user_model().objects.filter(username=as_user).first() if as_user else None
        if as_user and user is None:
            raise CommandError(f"No user {as_user!r}.")
        if not no_floors:
            record = floors.calibrate_floors(evaluation_set, target, user=user, save=not dry_run)
            self.stdout.write(floors.floors_table(record))
        calibrate_and_report(self.stdout.write, evaluation_set, target, user=user, metric=metric,
                             shares=shares, rrf_ks=rrf_k, depths=depths, save=not dry_run, name=name)
        if dry_run:
            self.stdout.write("dry run: nothing stored")
        else:
            self.stdout.write(self.style.SUCCESS(f"stored on space {target.name}"))


    def _wait_for_vectors(self, space, timeout: float) -> bool:
        import time

        from tqdm import tqdm

        from search.services.embedding import missing_chunks

        deadline = time.monotonic() + timeout
        missing = start = missing_chunks(space).count()
        with tqdm(total=start, desc=f"vectors of {space.name}", unit="chunk", file=self.stdout) as bar:
            while missing:
                if time.monotonic() > deadline:
                    return False
                time.sleep(2)
                missing = missing_chunks(space).count()
                bar.update(max(0, start - missing - bar.n))
        return True


def calibrate_and_report(write, evaluation_set, space, *, name=None, **kw) -> dict:
    record = calibration.calibrate(evaluation_set, space, **kw)
    write(calibration.curve_table(record))
    out = report.write_report([], name or f"calibration-{space.name}-{timezone.now():%Y%m%d-%H%M%S}",
                              title=f"Hybrid calibration of {space.name} on {evaluation_set.name}",
                              extra={"calibration": record})
    write(f"curve plot and table: {out / 'report.html'}")
    return record
