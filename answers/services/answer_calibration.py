"""Calibrating a space's answer floor (answers.services.support) on an
evaluation set and questions no document answers.

Each question is asked as the portal's answer path asks it (gather_evidence:
the search as the calibrating user, the relevance floors) with no answer
floor, and its best source's support is measured. A threshold answers a
question when its sources passed the floors and its support passes the rule
(content coverage ≥ threshold, or similarity ≥ the space's semantic-only
floor). Over every threshold that separates two measured questions:

- answered rate: answerable questions (the set's) still answered;
- refusal rate: unanswerable questions (the file's) refused — by the floors or
  by the threshold.

Among thresholds that keep the answered rate within MAX_ANSWER_LOSS (2
points) of the floors' own, the chosen one maximises their sum (balanced
accuracy), ties going to the lowest threshold (more answers). It is stored
only when its gain over the floors alone is beyond chance: the lower end of
a bootstrap confidence interval (questions resampled within each kind, as
the hybrid calibration does for its fusion) above zero. Otherwise the answer
floor stays empty. docs/decisions.md, "An answer floor for near misses".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.utils import timezone

from answers.services.evidence import gather_evidence
from answers.services.support import Support
from search.models import EmbeddingSpace

SAMPLES = Path(settings.BASE_DIR) / "documents" / "samples"
# Questions phrased as employees ask them (the `samples` set's are mostly keyword queries) and
# questions no sample document answers; neither is ever evaluated on (evaluate_answers reads
# samples-guard and documents/samples/unanswerable.jsonl).
SAMPLE_ANSWERABLE_CALIBRATION = SAMPLES / "answerable_calibration.jsonl"
SAMPLE_UNANSWERABLE_CALIBRATION = SAMPLES / "unanswerable_calibration.jsonl"
# At most this share of the answerable questions may lose their answer (as the relevance
# floors keep 98% of theirs: search.evaluation.floors.ANSWER_LOSS). Measured with 10%, the
# balanced choice cost the held-out guard set 40% of its answers: docs/decisions.md.
MAX_ANSWER_LOSS = 0.02
BOOTSTRAP_SAMPLES, CONFIDENCE, SEED = 2000, 0.95, 13
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Point:
    query: str
    answerable: bool
    support: Support | None  # None: nothing passed the relevance floors (refused whatever the threshold)


def collect(questions: list[tuple[str, bool]], user, progress: Progress | None = None) -> tuple[list[Point], object]:
    """(points, space): each (question, answerable) asked with no answer floor."""
    points, space = [], None
    for n, (query, answerable) in enumerate(questions, start=1):
        evidence = gather_evidence(user, query, answer_floor=None, measure_support=True)
        space = space or evidence.space
        points.append(Point(query, answerable, evidence.support))
        if progress:
            progress(n, len(questions))
    return points, space


def outcome(points: list[Point], threshold: float | None, similarity_bar: float | None) -> dict:
    answerable = [p for p in points if p.answerable]
    unanswerable = [p for p in points if not p.answerable]

    def answered(p: Point) -> bool:
        return p.support is not None and p.support.answers(threshold, similarity_bar)

    answered_rate = sum(map(answered, answerable)) / len(answerable) if answerable else None
    refusal_rate = sum(not answered(p) for p in unanswerable) / len(unanswerable) if unanswerable else None
    return {"threshold": threshold, "answered_rate": round(answered_rate, 4) if answered_rate is not None else None,
            "refusal_rate": round(refusal_rate, 4) if refusal_rate is not None else None}


def candidate_thresholds(points: list[Point]) -> list[float]:
    """Every threshold that answers or refuses one more measured question: each
    coverage (answers it) and the next step up (refuses it); supports are
    measured to 4 decimals."""
    values = {p.support.coverage for p in points if p.support is not None}
    return sorted({round(v, 4) for v in values} | {round(v + 0.0001, 4) for v in values})


def gain_interval(points: list[Point], threshold: float, similarity_bar: float | None,
                  samples: int = BOOTSTRAP_SAMPLES, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Bootstrap interval of (answered + refused) with `threshold` minus without,
    the answerable and the unanswerable questions resampled separately."""
    import numpy as np

    def decided(p: Point, t) -> bool:  # the right outcome for the question's kind
        answered = p.support is not None and p.support.answers(t, similarity_bar)
        return answered if p.answerable else not answered

    rng = np.random.default_rng(SEED)
    gains = np.zeros(samples)
    for kind in (True, False):
        group = [p for p in points if p.answerable == kind]
        change = np.array([decided(p, threshold) - decided(p, None) for p in group], dtype=float)
        picks = rng.integers(0, len(group), size=(samples, len(group)))
        gains += change[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    return round(float(np.quantile(gains, tail)), 4), round(float(np.quantile(gains, 1 - tail)), 4)


def choose_threshold(points: list[Point], similarity_bar: float | None,
                     max_answer_loss: float = MAX_ANSWER_LOSS, confidence: float | None = CONFIDENCE) -> dict:
    """The record: the floors' own outcome, the curve, and the chosen threshold
    (None when nothing beats the floors alone beyond chance, or a side has no
    questions; `confidence=None`: any gain counts)."""
    base = outcome(points, None, similarity_bar)
    record = {"rule": "content coverage ≥ threshold, or similarity ≥ the semantic-only floor",
              "similarity_bar": similarity_bar, "max_answer_loss": max_answer_loss,
              "answerable": sum(p.answerable for p in points),
              "unanswerable": sum(not p.answerable for p in points), "floors_only": base}
    if base["answered_rate"] is None or base["refusal_rate"] is None:
        return {**record, "threshold": None, "chosen": base, "curve": [],
                "reason": "needs answerable and unanswerable questions"}
    curve = [outcome(points, t, similarity_bar) for t in candidate_thresholds(points)]
    allowed = [c for c in curve if c["answered_rate"] >= base["answered_rate"] - max_answer_loss - 1e-9]
    best = max(allowed, key=lambda c: (c["answered_rate"] + c["refusal_rate"], -c["threshold"]), default=None)
    if best is None or best["answered_rate"] + best["refusal_rate"] <= base["answered_rate"] + base["refusal_rate"]:
        return {**record, "threshold": None, "chosen": base, "curve": curve,
                "reason": "no threshold beats the relevance floors alone"}
    record["gain"] = round(best["answered_rate"] + best["refusal_rate"] - base["answered_rate"]
                           - base["refusal_rate"], 4)
    if confidence is not None:
        record["gain_interval"] = gain_interval(points, best["threshold"], similarity_bar, confidence=confidence)
        if record["gain_interval"][0] <= 0:
            return {**record, "threshold": None, "chosen": base, "best": best, "curve": curve,
                    "reason": f"the best threshold, {best['threshold']}, gains {record['gain']:+.4f} "
                              f"(answered + refused), within chance: {confidence:.0%} interval "
                              f"{record['gain_interval'][0]:+.4f} to {record['gain_interval'][1]:+.4f}"}
    return {**record, "threshold": best["threshold"], "chosen": best, "curve": curve}


def set_questions(evaluation_set) -> list[str]:
    """The usable questions of an evaluation set (as evaluate_answers asks them)."""
    return [i.query for i in evaluation_set.items.order_by("pk") if i.relevant_chunks or i.relevant_documents]


def calibrate_answer_floor(answerable: list[str], unanswerable: list[str], *, user, save: bool = True,
                           inputs: dict | None = None, progress: Progress | None = None) -> dict:
    """Measure, choose and (unless save=False) store the answer floor on the
    space the user's answers use (the active one); returns the record, kept in
    `space.calibration["answers"]`. `inputs`: where the questions came from."""
    questions = [(q, True) for q in answerable] + [(q, False) for q in unanswerable]
    points, space = collect(questions, user, progress)
    if space is None:
        raise ValueError("no embedding space answers: activate one first")
    record = choose_threshold(points, space.semantic_only_floor)
    record.update({**(inputs or {}), "space": space.name, "calibrated_at": timezone.now().isoformat(),
                   "points": [{"query": p.query, "answerable": p.answerable,
                               "coverage": p.support.coverage if p.support else None,
                               "similarity": p.support.similarity if p.support else None} for p in points]})
    if save:
        calibration = dict(space.calibration or {}, answers=record)
        EmbeddingSpace.objects.filter(pk=space.pk).update(answer_floor=record["threshold"], calibration=calibration)
        space.refresh_from_db()
    return record


def answer_floor_table(record: dict) -> str:
    base, chosen = record["floors_only"], record["chosen"]
    answerable = " + ".join(x for x in (record.get("set"), record.get("answerable_file")) if x)
    lines = [f"answer floor of {record['space']} calibrated on {record['answerable']} answerable questions "
             f"({answerable or '?'}) and {record['unanswerable']} unanswerable ones "
             f"({record.get('unanswerable_file') or '?'})",
             f"  rule: {record['rule']} (similarity bar {record['similarity_bar']})",
             f"  relevance floors alone: answered {base['answered_rate']:.1%}, refused {base['refusal_rate']:.1%}"]
    if record["threshold"] is None:
        lines.append(f"  answer floor: none ({record.get('reason')})")
    else:
        interval = record.get("gain_interval")
        lines.append(f"  answer floor: {record['threshold']:.4f} — answered {chosen['answered_rate']:.1%}, refused "
                     f"{chosen['refusal_rate']:.1%} (the highest answered + refused, losing at most "
                     f"{record['max_answer_loss']:.0%} of the answers; gain {record['gain']:+.4f}"
                     + (f", interval {interval[0]:+.4f} to {interval[1]:+.4f})" if interval else ")"))
    return "\n".join(lines)
