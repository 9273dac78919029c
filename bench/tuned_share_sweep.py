"""How much of a fine-tuning to keep (issue 10): one fully fine-tuned package,
mixed with its base at several shares (WiSE-FT, the job's `tuned_share`:
base + share × (tuned − base), finetune.services.model_setup.keep_share_of_tuning),
each mix evaluated on the benchmark it was trained for and on the portal's own
guard set, in one run.

    .venv/bin/python bench/tuned_share_sweep.py --base var/models/multilingual-e5-small \
        --tuned var/models/<package> [--shares 0 0.3 0.5 1] [--guard-set samples-guard] \
        [--csv ../shared/datasets/vicov19qa] [--limit N]

Per share (0 = the base itself, 1 = the package as trained):
- vicov19qa test: `manage.py evaluate_corpus --model MIX --mode vector --mode hybrid
  --calibrate-on val --no-record` (scratch database; floors and fusion calibrated
  on val): MRR@10, Hit@1, Hit@10;
- guard: the mix as a temporary space over the portal's ready chunks, vector mode
  without floors — as the fine-tuning job's own guard (finetune.services.guard) —
  MRR@10 and its change against share 0.
Writes bench/results/tuned-share-sweep.json and var/bench/tuned-share-sweep.png.
Run it on the dev portal (its database holds the guard set and the chunks).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import _record  # noqa: E402

OUT_DIR = ROOT / "var" / "bench"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def mixed_model(base: str, tuned: str, share: float) -> str:
    if share <= 0:
        return str(Path(base).resolve())
    if share >= 1:
        return str(Path(tuned).resolve())
    from sentence_transformers import SentenceTransformer

    from finetune.services.model_setup import keep_share_of_tuning

    out = OUT_DIR / "models" / f"{Path(tuned).name}-share-{share:g}"
    if not (out / "modules.json").exists():
        model = SentenceTransformer(tuned, device="cpu", local_files_only=True)
        changed = keep_share_of_tuning(model, base, share)
        model.save(str(out))
        log(f"share {share:g}: {changed} tensors mixed → {out}")
    return str(out)


def benchmark(model: str, csv: str, limit: int | None, name: str) -> dict:
    """vector and calibrated hybrid on the test split (evaluate_corpus, scratch database)."""
    cmd = [sys.executable, "manage.py", "evaluate_corpus", "--csv", csv, "--model", model, "--mode", "vector",
           "--mode", "hybrid", "--calibrate-on", "val", "--no-record", "--name", name]
    if limit:
        cmd += ["--limit", str(limit)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"evaluate_corpus failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    match = re.search(r"^\s*(\S+performance_metrics\.json)", done.stdout, re.M)
    metrics = json.loads(Path(match.group(1)).read_text())
    return {run["mode"]: {k: run["metrics"].get(k) for k in ("MRR@10", "Hit@1", "Hit@10")}
            for run in metrics["runs"]}


def guard(model: str, set_name: str, label: str) -> dict:
    from search.evaluation import compare, runner
    from search.evaluation.models import EvaluationSet
    from search.services import embedding, spaces

    evaluation_set = EvaluationSet.objects.get(name=set_name)
    space = spaces.create_space(f"sweep-{label}"[:64], model)
    try:
        embedding.backfill(space)
        run = runner.evaluate(evaluation_set, space, "vector", depth=100, name=f"sweep-{label}", measure=False)
        return {k: run.metrics.get(k) for k in ("MRR@10", "Hit@1", "Hit@10")}
    finally:
        compare.discard(space)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = [r["share"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(shares, [r["benchmark"]["hybrid"]["MRR@10"] for r in rows], "o-", label="vicov19qa test, hybrid")
    ax.plot(shares, [r["benchmark"]["vector"]["MRR@10"] for r in rows], "s-", label="vicov19qa test, vector")
    ax.plot(shares, [r["guard"]["MRR@10"] for r in rows], "^-", label="guard set, vector")
    ax.set_xlabel("share of the fine-tuning kept (0: base, 1: as trained)")
    ax.set_ylabel("MRR@10")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save(args, rows: list[dict], run: dict) -> Path:
    base = next((r for r in rows if r["share"] == 0), None)
    for row in rows:
        if base:
            row["guard_change"] = round(row["guard"]["MRR@10"] / base["guard"]["MRR@10"] - 1, 4)
            row["hybrid_change"] = round(row["benchmark"]["hybrid"]["MRR@10"]
                                         - base["benchmark"]["hybrid"]["MRR@10"], 4)
    summary = {"base": args.base, "tuned": args.tuned, "guard_set": args.guard_set, "limit": args.limit,
               "shares_asked": sorted(set(args.shares)), "rows": rows}
    return _record.save("tuned-share-sweep" + (f"-limit-{args.limit}" if args.limit else ""), summary, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--tuned", required=True)
    parser.add_argument("--shares", type=float, nargs="+", default=[0, 0.3, 0.5, 1])
    parser.add_argument("--guard-set", default="samples-guard")
    parser.add_argument("--csv", default=str(ROOT.parent / "shared" / "datasets" / "vicov19qa"))
    parser.add_argument("--limit", type=int, default=None, help="test questions (smoke runs)")
    args = parser.parse_args()
    import django

    django.setup()
    run = _record.start()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rows = []
    for share in sorted(set(args.shares)):
        model = mixed_model(args.base, args.tuned, share)
        started = time.perf_counter()
        row = {"share": share, "model": model,
               "benchmark": benchmark(model, args.csv, args.limit, f"sweep-{share:g}"),
               "guard": guard(model, args.guard_set, f"{share:g}")}
        row["seconds"] = round(time.perf_counter() - started, 1)
        log(f"share {share:g}: {json.dumps(row['benchmark'])} guard {json.dumps(row['guard'])}")
        rows.append(row)
        path = save(args, rows, run)  # after every share: a long run stopped early keeps what it measured
    plot(rows, OUT_DIR / "tuned-share-sweep.png")
    log(f"wrote {path} and {OUT_DIR / 'tuned-share-sweep.png'}")


if __name__ == "__main__":
    main()
