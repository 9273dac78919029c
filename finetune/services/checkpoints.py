"""Training checkpoints in the job's work folder: what a killed worker's
successor needs to continue exactly where the last checkpoint stood — the
trainable parameters (frozen ones equal the base model, which is loaded again),
the optimizer and scheduler state, the step, every random generator, the curves
and the early-stopping state. Written to a temporary file and renamed, so a
worker killed while writing leaves the previous checkpoint intact."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


def rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(folder: Path, state: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save({**state, "rng": rng_state()}, folder / CHECKPOINT)


def load(folder: Path) -> dict | None:
    import torch

    path = folder / CHECKPOINT
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def save_best(folder: Path, step: int, score: float, weights: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save({"step": step, "score": score, "weights": weights}, folder / BEST)


def load_best(folder: Path) -> dict | None:
    import torch

    path = folder / BEST
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None
