"""Provenance and storage for benchmark results; every bench script uses it.

    import _record
    run = _record.start()                        # commit, dirty flag, machine, date, command, load
    ...
    _record.save("search-100000", summary, run)  # → bench/results/search-100000.json

Results go to bench/results/, which is committed: a figure in docs/benchmarks.md
points at the JSON it came from, and the JSON says which commit (and whether
the working tree had uncommitted changes), which machine and when. Large
by-products (vector caches, plots) stay under var/bench/. BENCH_RESULTS_DIR
sends results elsewhere (tests, trial runs).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
VERSIONS_OF = ("torch", "sentence-transformers", "transformers", "Django", "psycopg", "pgvector")


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _versions() -> dict[str, str]:
    found = {}
    for name in VERSIONS_OF:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _command() -> str:
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else sys.argv[0]
    return " ".join([".venv/bin/python", shown, *sys.argv[1:]])


def start() -> dict:
    """What a result must say about the run; call before measuring."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": None if status is None else bool(status),  # uncommitted changes to tracked files
        "started": _now(),
        "command": _command(),
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "memory_gib": _memory_gib(),
                    "os": platform.platform(), "python": platform.python_version()},
        "versions": _versions(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS)


def save(name: str, summary: dict, run: dict) -> Path:
    """Write {"run": provenance, **summary} to <results>/<name>.json; return the path."""
    run = {**run, "finished": _now(), "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"run": run, **summary}, indent=2, ensure_ascii=False, default=str) + "\n",
                    encoding="utf-8")
    print(f"result: {path}", file=sys.stderr)
    return path


def previous(name: str) -> dict:
    """The last saved result of that name ({} when none), e.g. to carry build figures over on --reuse."""
    path = results_dir() / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
