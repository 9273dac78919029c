"""Where the time goes when fine-tuning e5-small with MultipleNegativesRankingLoss
on a CPU, and which settings make an epoch of the vicov19qa train split short.
UIT-ViCoV19QA is research-use only: read from ../shared by path, never copied.

    # token lengths + s/step of each lever, interleaved (ratios to `base` in the same run)
    .venv/bin/python bench/finetune_speed.py levers --levers base,freeze,group,freeze+group --rounds 8
    # one step under torch.profiler (top ops; forward / backward / optimizer)
    .venv/bin/python bench/finetune_speed.py profile --lever base
    # one real epoch with a combination, saved as a model folder
    .venv/bin/python bench/finetune_speed.py epoch --lever freeze+group --save var/models/e5-ft-speed

A lever is a `+`-joined list of settings over the plain baseline (all parameters
trainable, batch 32, max length 128, random batches, AdamW lr 3e-5, float32,
SDPA attention, torch's default threads):

  freeze     word-embedding matrix frozen        group      batches grouped by query length
  groupsum   grouped by query+passage length     len<N>     max length N
  bs<N>      batch size N                        threads<N> N intra-op threads
  eager      eager attention instead of SDPA     bf16       bfloat16 autocast (loss in float32)
  fused      AdamW fused=True                    foreach    AdamW foreach=True
  ckpt       gradient checkpointing              cached<N>  CachedMNRL, mini-batch N
  layers<N>  bottom N transformer layers frozen too (with the embeddings)
  nodrop     dropout off (0.1 in e5-small's config)
  noattndrop attention-probability dropout off only (SDPA on CPU takes its flash
             kernel only without dropout; with it, the math path)

Every lever first gets a warm-up step on `--warmup-pairs` pairs (not timed: it
allocates the optimizer state). Then each round runs `--steps` timed steps of
every lever, in a rotated order that alternates direction, on the same model
(levers switch settings between steps), so load from other processes hits all
alike; a lever's ratio is the median over rounds of its time / the reference's
time in the same round. Timed: wall and process CPU time; tokenize / forward /
backward / optimizer. The batches timed are a seeded random sample of the
lever's own epoch batches. Partial results are written every 2 rounds. Results:
bench/results/<name>.json (bench/_record.py: commit, machine, load average).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import _record  # noqa: E402

from finetune.services import cpu_speed  # noqa: E402  (plain Python, no Django)

DEFAULT_MODEL = ROOT / "var" / "models" / "multilingual-e5-small"
DEFAULT_CSV = ROOT.parent.parent / "shared" / "datasets" / "vicov19qa" / "UIT-ViCoV19QA_train.csv"
BASE = {"freeze": False, "freeze_layers": 0, "max_length": 128, "batch_size": 32, "grouping": "random",
        "threads": None, "attention": "sdpa", "bf16": False, "optimizer": "default", "checkpointing": False,
        "cached_mini_batch": 0, "dropout": True, "attention_dropout": True}
LR = 3e-5


def parse_lever(name: str) -> dict:
    config = dict(BASE)
    for token in name.split("+"):
        if token in ("base", ""):
            continue
        elif token == "freeze":
            config["freeze"] = True
        elif token in ("group", "groupsum"):
            config["grouping"] = {"group": "query", "groupsum": "sum"}[token]
        elif token in ("eager", "bf16", "fused", "foreach", "ckpt", "nodrop", "noattndrop"):
            key, value = {"eager": ("attention", "eager"), "bf16": ("bf16", True), "fused": ("optimizer", "fused"),
                          "foreach": ("optimizer", "foreach"), "ckpt": ("checkpointing", True),
                          "nodrop": ("dropout", False), "noattndrop": ("attention_dropout", False)}[token]
            config[key] = value
        else:
            for prefix, key in (("len", "max_length"), ("bs", "batch_size"), ("threads", "threads"),
                                ("cached", "cached_mini_batch"), ("layers", "freeze_layers")):
                if token.startswith(prefix) and token[len(prefix):].isdigit():
                    config[key] = int(token[len(prefix):])
                    if key == "freeze_layers":
                        config["freeze"] = True
                    break
            else:
                raise SystemExit(f"unknown lever setting {token!r} in {name!r}")
    return config


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="|", quotechar='"'))
    return [r["Question"].strip() for r in rows], [r["Answer_1"].strip() for r in rows]


class Bench:
    """The model, the data, and one lever's settings applied and undone."""

    def __init__(self, model_path: Path, csv_path: Path, seed: int):
        import torch
        from sentence_transformers import SentenceTransformer

        self.torch = torch
        self.seed = seed
        torch.manual_seed(seed)
        self.model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        self.model_max_length = self.model.max_seq_length
        self.optimizers: dict = {}
        self.dropouts = [(name, m, m.p) for name, m in self.model.named_modules() if isinstance(m, torch.nn.Dropout)]
        questions, answers = read_pairs(csv_path)
        self.queries = ["query: " + q for q in questions]
        self.passages = ["passage: " + a for a in answers]
        tokenizer = self.model.tokenizer
        self.query_tokens = cpu_speed.token_lengths(tokenizer, self.queries)
        self.passage_tokens = cpu_speed.token_lengths(tokenizer, self.passages)
        self.duplicate_keys = self.passages  # the same answer twice in a batch would be a false negative

    def lengths(self) -> dict:
        return {"queries": cpu_speed.length_summary(self.query_tokens),
                "passages": cpu_speed.length_summary(self.passage_tokens)}

    def batches(self, config: dict, seed: int | None = None) -> list[list[int]]:
        seed = self.seed if seed is None else seed
        n, size, cap = len(self.queries), config["batch_size"], config["max_length"]
        if config["grouping"] == "random":
            return cpu_speed.random_batches(n, size, seed=seed, duplicate_keys=self.duplicate_keys)
        if config["grouping"] == "query":
            key = [min(q, cap) for q in self.query_tokens]
        else:
            key = [min(q, cap) + min(p, cap) for q, p in zip(self.query_tokens, self.passage_tokens)]
        return cpu_speed.length_grouped_batches(key, size, seed=seed, duplicate_keys=self.duplicate_keys)

    def padded_tokens(self, batch: list[int], cap: int) -> int:
        q = [min(self.query_tokens[i], cap) for i in batch]
        p = [min(self.passage_tokens[i], cap) for i in batch]
        return len(batch) * (max(q) + max(p))

    def apply(self, config: dict):
        """Switch the model to a lever's settings; return its (loss, optimizer).
        Nothing is reset: levers alternate step by step on the same weights (the
        timing does not depend on them). Each set of trainable parameters keeps
        its own optimizer, so its AdamW state is allocated once (warm-up)."""
        torch, model = self.torch, self.model
        model.max_seq_length = config["max_length"]
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        if config["freeze"]:
            cpu_speed.freeze_word_embeddings(model)
        bert = model[0].auto_model
        if config["freeze_layers"]:
            for module in (bert.embeddings, *bert.encoder.layer[:config["freeze_layers"]]):
                for parameter in module.parameters():
                    parameter.requires_grad_(False)
        for name, module, p in self.dropouts:
            attention = name.endswith("attention.self.dropout")
            module.p = p if config["dropout"] and (config["attention_dropout"] or not attention) else 0.0
        bert.set_attn_implementation(config["attention"])
        # transformers 5 renamed gradient_* to activation_checkpointing_*
        enable = getattr(bert, "activation_checkpointing_enable", None) or bert.gradient_checkpointing_enable
        disable = getattr(bert, "activation_checkpointing_disable", None) or bert.gradient_checkpointing_disable
        enable() if config["checkpointing"] else disable()
        torch.set_num_threads(config["threads"] or self.default_threads)
        key = (config["freeze"], config["freeze_layers"], config["optimizer"])
        if key not in self.optimizers:
            kwargs = {"fused": True} if config["optimizer"] == "fused" else (
                {"foreach": True} if config["optimizer"] == "foreach" else {})
            self.optimizers[key] = torch.optim.AdamW(cpu_speed.trainable_parameters(model), lr=LR, **kwargs)
        if config["cached_mini_batch"]:
            from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss
            loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=config["cached_mini_batch"],
                                                      show_progress_bar=False)
        else:
            from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
            loss = MultipleNegativesRankingLoss(model)
        model.train()
        return loss, self.optimizers[key]

    def step(self, config: dict, loss_fn, optimizer, batch: list[int], scheduler=None) -> dict:
        """One training step; wall seconds of each phase and the process CPU seconds."""
        clock, cpu0 = time.perf_counter, time.process_time()
        t0 = clock()
        features = [self.model.preprocess([self.queries[i] for i in batch]),
                    self.model.preprocess([self.passages[i] for i in batch])]
        t1 = clock()
        if config["cached_mini_batch"]:
            loss = loss_fn(features, None)  # its own forward passes (no-grad, then re-run in backward)
        else:
            with cpu_speed.cpu_autocast(config["bf16"]):
                embeddings = [self.model(f)["sentence_embedding"] for f in features]
            # the similarities, scale 20 and softmax in float32 whatever the forward ran in
            loss = loss_fn.compute_loss_from_embeddings([e.float() for e in embeddings], None)
        t2 = clock()
        loss.backward()
        t3 = clock()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = clock()
        return {"wall": t4 - t0, "cpu": time.process_time() - cpu0, "tokenize": t1 - t0, "forward": t2 - t1,
                "backward": t3 - t2, "optimizer": t4 - t3, "loss": float(loss.detach()),
                "padded_tokens": self.padded_tokens(batch, config["max_length"])}


def summarize(name: str, config: dict, steps: list[dict], epoch_batches: list[list[int]], bench: Bench) -> dict:
    mean = {k: statistics.fmean(s[k] for s in steps) for k in ("wall", "cpu", "tokenize", "forward", "backward",
                                                               "optimizer", "padded_tokens")}
    cap = config["max_length"]
    epoch_tokens = [bench.padded_tokens(b, cap) for b in epoch_batches]
    # The timed batches are a sample: scale forward + backward by the epoch's mean padded tokens.
    per_token = (mean["forward"] + mean["backward"]) / mean["padded_tokens"]
    adjusted = mean["tokenize"] + mean["optimizer"] + per_token * statistics.fmean(epoch_tokens)
    return {"lever": name, "config": config, "steps": len(steps), "mean": mean,
            "stdev_wall": statistics.stdev(s["wall"] for s in steps) if len(steps) > 1 else 0.0,
            "epoch_batches": len(epoch_batches), "epoch_padded_tokens_mean": statistics.fmean(epoch_tokens),
            "padding_efficiency": cpu_speed.padding_efficiency(epoch_batches, bench.query_tokens,
                                                               bench.passage_tokens, max_length=cap),
            "s_per_step_adjusted": adjusted, "epoch_minutes_estimate": adjusted * len(epoch_batches) / 60}


def run_levers(args, bench: Bench, run: dict) -> None:
    from tqdm import tqdm

    names = args.levers.split(",")
    if args.reference not in names:
        names.insert(0, args.reference)
    configs = {n: parse_lever(n) for n in names}
    epochs = {n: bench.batches(c) for n, c in configs.items()}
    rng = random.Random(args.seed)
    samples = {n: rng.sample(range(len(b)), min(len(b), args.rounds * args.steps + 1)) for n, b in epochs.items()}
    steps: dict[str, list] = {n: [] for n in names}
    rounds: list[dict] = []
    progress = tqdm(total=len(names) * (args.rounds * args.steps + 1), desc="steps", unit="step")
    for name in names:  # warm-up on a few pairs: allocates the AdamW state, primes the kernels
        loss_fn, optimizer = bench.apply(configs[name])
        bench.step(configs[name], loss_fn, optimizer, epochs[name][samples[name][-1]][:args.warmup_pairs])
        progress.update(1)
    for r in range(args.rounds):
        # rotate and alternate direction: no lever always first, last or after the same one
        order = names[r % len(names):] + names[:r % len(names)]
        order = order if r % 2 == 0 else order[::-1]
        round_means = {}
        for name in order:
            config = configs[name]
            loss_fn, optimizer = bench.apply(config)
            timed = []
            for pick in samples[name][r * args.steps:(r + 1) * args.steps]:
                result = bench.step(config, loss_fn, optimizer, epochs[name][pick])
                result.update(round=r, load=os.getloadavg()[0])
                timed.append(result)
                progress.update(1)
                progress.set_postfix(lever=name, s=f"{result['wall']:.1f}")
            steps[name].extend(timed)
            round_means[name] = statistics.fmean(s["wall"] for s in timed)
        rounds.append({"round": r, "order": order, "mean_wall": round_means, "load_average": os.getloadavg()[0]})
        if r % 2 == 1 or r == args.rounds - 1:
            save_levers(args, bench, run, names, configs, epochs, steps, rounds, complete=r == args.rounds - 1)
    progress.close()


def save_levers(args, bench, run, names, configs, epochs, steps, rounds, complete: bool) -> None:
    levers = [summarize(n, configs[n], steps[n], epochs[n], bench) for n in names]
    base = next(x for x in levers if x["lever"] == args.reference)
    for lever in levers:
        # paired per round: both ran within minutes of each other under the same load
        per_round = [r["mean_wall"][lever["lever"]] / r["mean_wall"][args.reference] for r in rounds]
        lever["ratio_wall_by_round"] = per_round
        lever["ratio_wall"] = statistics.median(per_round)
        lever["ratio_cpu"] = lever["mean"]["cpu"] / base["mean"]["cpu"]
        lever["ratio_adjusted"] = lever["s_per_step_adjusted"] / base["s_per_step_adjusted"]
    summary = {"complete": complete, "reference": args.reference, "rounds_done": len(rounds), "steps_per_round": args.steps,
               "seed": args.seed, "threads_default": bench.default_threads, "lengths": bench.lengths(),
               "levers": levers, "rounds": rounds,
               "step_log": {n: steps[n] for n in names}}
    _record.save(args.name, summary, run)
    for lever in levers:
        print(f"{lever['lever']:28} {lever['mean']['wall']:6.2f} s/step  ×{lever['ratio_wall']:.2f} wall  "
              f"×{lever['ratio_cpu']:.2f} cpu  fwd {lever['mean']['forward']:.2f} bwd {lever['mean']['backward']:.2f} "
              f"opt {lever['mean']['optimizer']:.2f}  pad-eff {lever['padding_efficiency']:.2f}  "
              f"epoch≈{lever['epoch_minutes_estimate']:.1f} min", file=sys.stderr)


def run_profile(args, bench: Bench, run: dict) -> None:
    from torch.profiler import ProfilerActivity, profile

    config = parse_lever(args.lever)
    loss_fn, optimizer = bench.apply(config)
    batches = bench.batches(config)
    bench.step(config, loss_fn, optimizer, batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        phases = bench.step(config, loss_fn, optimizer, batches[1])
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top)
    print(table)
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:args.top]
    _record.save(f"{args.name}-profile-{args.lever.replace('+', '-')}", {
        "lever": args.lever, "config": config, "phases": phases,
        "top_ops": [{"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "calls": e.count} for e in top],
        # inclusive times of the parts the levers target: the embedding's backward, the optimizer step
        "inclusive": [{"op": e.key, "cpu_s": e.cpu_time_total / 1e6, "calls": e.count}
                      for e in prof.key_averages()
                      if "EmbeddingBackward" in e.key or e.key.startswith("Optimizer.step")
                      or e.key in ("aten::embedding_dense_backward", "aten::bernoulli_", "aten::dropout")]}, run)


def run_epoch(args, bench: Bench, run: dict) -> None:
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    config = parse_lever(args.lever)
    loss_fn, optimizer = bench.apply(config)
    batches = bench.batches(config, seed=args.seed)
    if args.max_steps:
        batches = batches[:args.max_steps]
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * len(batches)), len(batches))
    log, started = [], time.perf_counter()
    progress = tqdm(batches, desc=args.lever, unit="step")
    for number, batch in enumerate(progress, 1):
        result = bench.step(config, loss_fn, optimizer, batch, scheduler)
        result.update(step=number, load=os.getloadavg()[0], lr=scheduler.get_last_lr()[0])
        log.append(result)
        progress.set_postfix(loss=f"{result['loss']:.3f}", s=f"{result['wall']:.1f}")
        if number % 10 == 0 or number == len(batches):
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
    wall = time.perf_counter() - started
    bench.model.max_seq_length = bench.model_max_length  # serve with the model's own limit, not the training cut
    bench.model.eval()
    bench.model.save(args.save)
    _record.save(f"{args.name}-epoch", {
        "lever": args.lever, "config": config, "steps": len(batches), "pairs": sum(len(b) for b in batches),
        "warmup_ratio": args.warmup_ratio, "lr": LR, "seed": args.seed, "wall_s": wall,
        "wall_minutes": wall / 60, "mean_s_per_step": wall / len(batches), "saved": args.save,
        "padding_efficiency": cpu_speed.padding_efficiency(batches, bench.query_tokens, bench.passage_tokens,
                                                           max_length=config["max_length"]),
        "loss_first_10": statistics.fmean(s["loss"] for s in log[:10]),
        "loss_last_10": statistics.fmean(s["loss"] for s in log[-10:]), "step_log": log}, run)


def run_plot(args) -> None:
    """Ratios of every lever run (one panel per run, to its reference) and the epoch's step times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = _record.results_dir()
    runs = [json.loads((folder / f"{n}.json").read_text(encoding="utf-8")) for n in args.runs.split(",")]
    epoch_path = folder / f"{args.name}-epoch.json"
    epoch = json.loads(epoch_path.read_text(encoding="utf-8")) if epoch_path.exists() else None
    panels = len(runs) + bool(epoch)
    columns = min(2, panels)
    rows = -(-panels // columns)
    fig, grid = plt.subplots(rows, columns, figsize=(7.5 * columns, 4.8 * rows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[panels:]:
        ax.axis("off")
    for ax, result in zip(axes, runs):
        reference = result.get("reference", "base")
        levers = [x for x in result["levers"]]
        labels = [x["lever"].replace(reference, "ref") if x["lever"] != reference else reference for x in levers]
        labels = [label.replace("freeze+fused+group+bf16", "F") for label in labels]
        y = range(len(levers))
        ax.barh([i + 0.2 for i in y], [x["ratio_wall"] for x in levers], height=0.4, label="wall (median of rounds)")
        ax.barh([i - 0.2 for i in y], [x["ratio_cpu"] for x in levers], height=0.4, label="process CPU time")
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="grey", lw=0.8)
        load = result["run"]["load_average_start"][0], result["run"]["load_average_end"][0]
        reference = reference.replace("freeze+fused+group+bf16", "F")
        ax.set_title(f"s/step ÷ {reference}  (F = freeze+fused+group+bf16)\n{result['rounds_done']} rounds × "
                     f"{result['steps_per_round']} step, load {load[0]:.1f}→{load[1]:.1f}", fontsize=9)
        ax.set_xlabel("ratio (lower is faster)")
        ax.legend(fontsize=7, loc="lower right")
    if epoch:
        ax = axes[panels - 1]
        log = epoch["step_log"]
        ax.plot([s["step"] for s in log], [s["wall"] for s in log], lw=0.8, label="s/step (wall)")
        ax.plot([s["step"] for s in log], [s["load"] for s in log], lw=0.8, label="load average (1 min)")
        ax2 = ax.twinx()
        ax2.plot([s["step"] for s in log], [s["loss"] for s in log], color="black", lw=0.6, label="loss")
        ax2.set_ylabel("MNRL loss")
        ax.set_xlabel("step")
        ax.set_title(f"one epoch, {epoch['lever']}: {epoch['wall_minutes']:.1f} min\n"
                     f"black: MNRL loss (right axis)", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out = folder / f"{args.name}.png"
    fig.savefig(out, dpi=110)
    print(f"plot: {out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["levers", "profile", "epoch", "lengths", "plot"])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="the vicov19qa train split")
    parser.add_argument("--levers", default="base,freeze,group,freeze+group", help="comma-separated levers")
    parser.add_argument("--reference", default="base", help="levers: ratios are to this lever (always run)")
    parser.add_argument("--lever", default="base", help="profile / epoch: one lever")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per lever per round")
    parser.add_argument("--warmup-pairs", type=int, default=4, help="pairs in each untimed warm-up step")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--top", type=int, default=25, help="profile: ops shown")
    parser.add_argument("--save", default=str(ROOT / "var" / "models" / "e5-small-ft-speed"), help="epoch: output")
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--max-steps", type=int, default=0, help="epoch: stop after N steps (smoke runs)")
    parser.add_argument("--interop-threads", type=int, default=None,
                        help="torch inter-op threads for the whole process (set once, before any work)")
    parser.add_argument("--name", default="finetune-speed", help="result file name under bench/results/")
    parser.add_argument("--runs", default="finetune-speed-levers,finetune-speed-levers-b",
                        help="plot: lever results (names under bench/results/) to draw")
    args = parser.parse_args()
    if args.mode == "plot":
        return run_plot(args)

    import torch

    if args.interop_threads:
        torch.set_num_interop_threads(args.interop_threads)
    run = _record.start()
    bench = Bench(args.model, args.csv, args.seed)
    bench.default_threads = torch.get_num_threads()
    run.update(threads={"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
               env={k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")},
               bf16_supported=cpu_speed.bf16_supported())
    print(json.dumps(bench.lengths(), indent=1), file=sys.stderr)
    if args.mode == "lengths":
        _record.save(f"{args.name}-lengths", {"lengths": bench.lengths()}, run)
    elif args.mode == "levers":
        run_levers(args, bench, run)
    elif args.mode == "profile":
        run_profile(args, bench, run)
    else:
        run_epoch(args, bench, run)


if __name__ == "__main__":
    main()
