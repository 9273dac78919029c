"""The answer floor's whole trade-off on a set and a file of unanswerable
questions: answered rate against refusal rate at every threshold of the rule
(answers.services.support), measured as calibrate_answers measures
(answers.services.answer_calibration). A diagnostic: on held-out questions it
shows what each threshold would cost, and is never used to choose one.

    PORTAL_VAR_DIR=$PWD/var/dev .venv/bin/python bench/answer_floor_curve.py \
        --set samples-guard --unanswerable documents/samples/unanswerable.jsonl --name answer-floor-guard

→ bench/results/<name>.json (the Pareto front, the marked thresholds, provenance),
plot var/bench/<name>.png. Needs the portal's database (services started,
samples loaded, a calibrated active space).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import _record  # noqa: E402

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from answers.services import answer_calibration as ac  # noqa: E402
from answers.services import evaluation  # noqa: E402
from search.evaluation.models import EvaluationSet  # noqa: E402


def front(curve: list[dict]) -> list[dict]:
    """The lowest threshold of each pair of rates that no other threshold beats
    (at least as good on both, better on one)."""
    def beats(o, c):
        return (o["answered_rate"] >= c["answered_rate"] and o["refusal_rate"] >= c["refusal_rate"]
                and (o["answered_rate"], o["refusal_rate"]) != (c["answered_rate"], c["refusal_rate"]))

    kept = {}
    for c in curve:  # thresholds ascending: the first of equal rates is the lowest
        if not any(beats(o, c) for o in curve):
            kept.setdefault((c["answered_rate"], c["refusal_rate"]), c)
    return list(kept.values())


def plot(curve: list[dict], marked: dict, base: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot([c["refusal_rate"] for c in curve], [c["answered_rate"] for c in curve], ".-", lw=1, ms=3,
            label="every threshold")
    ax.plot([base["refusal_rate"]], [base["answered_rate"]], "ks", label="relevance floors only")
    for label, c in marked.items():
        ax.plot([c["refusal_rate"]], [c["answered_rate"]], "o", label=label)
    ax.set_xlabel("refused (unanswerable questions)")
    ax.set_ylabel("answered (answerable questions)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_name", default="samples-guard")
    parser.add_argument("--unanswerable", default=str(evaluation.SAMPLE_UNANSWERABLE))
    parser.add_argument("--mark", action="append", type=float, default=[],
                        help="thresholds to mark (e.g. those calibrations chose)")
    parser.add_argument("--name", default="answer-floor-guard")
    args = parser.parse_args()
    run = _record.start()
    user = get_user_model().objects.filter(is_active=True, is_superuser=True).order_by("pk").first()
    questions = [(q, True) for q in ac.set_questions(EvaluationSet.objects.get(name=args.set_name))] + \
        [(c.query, False) for c in evaluation.read_unanswerable(args.unanswerable)]
    points, space = ac.collect(questions, user)
    bar = space.semantic_only_floor
    curve = [ac.outcome(points, t, bar) for t in ac.candidate_thresholds(points)]
    base = ac.outcome(points, None, bar)
    marked = {f"threshold {t}": ac.outcome(points, t, bar) for t in args.mark}
    summary = {"set": args.set_name, "unanswerable_file": args.unanswerable, "space": space.name,
               "similarity_bar": bar, "answerable": sum(p.answerable for p in points),
               "unanswerable": sum(not p.answerable for p in points), "floors_only": base, "marked": marked,
               "pareto_front": front(curve)}
    _record.save(args.name, summary, run)
    png = Path(settings.VAR_DIR) / "bench" / f"{args.name}.png"
    plot(curve, marked, base, png, f"answer floor on {args.set_name} + {Path(args.unanswerable).name} ({space.name})")
    print(f"floors only: answered {base['answered_rate']}, refused {base['refusal_rate']}")
    for label, c in marked.items():
        print(f"{label}: answered {c['answered_rate']}, refused {c['refusal_rate']}")
    print("Pareto front (threshold, answered, refused):")
    for c in summary["pareto_front"]:
        print(f"  {c['threshold']:.4f}  {c['answered_rate']:.4f}  {c['refusal_rate']:.4f}")
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
