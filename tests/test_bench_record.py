"""Benchmarks record where their figures come from (issue 9 item 22): the
commit and whether the tree was dirty, the machine, the date and the command,
in a JSON under bench/results/ (committed, unlike var/)."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import _record  # noqa: E402


def test_a_result_names_commit_machine_date_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [str(BENCH / "ingest_speed.py"), "--rounds", "2"])
    run = _record.start()
    path = _record.save("probe", {"figure": 1.5}, run)
    data = json.loads(path.read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert path == tmp_path / "probe.json" and data["figure"] == 1.5
    assert data["run"]["commit"] == head and isinstance(data["run"]["dirty"], bool)
    assert data["run"]["command"] == ".venv/bin/python bench/ingest_speed.py --rounds 2"
    assert data["run"]["machine"]["cpus"] >= 1 and data["run"]["machine"]["python"]
    assert data["run"]["started"].endswith("+00:00") and data["run"]["finished"] >= data["run"]["started"]


def test_results_are_not_in_an_ignored_folder():
    ignored = subprocess.run(["git", "check-ignore", "-q", str(_record.RESULTS / "x.json")], cwd=ROOT)
    assert ignored.returncode == 1  # 1: not ignored


def _scripts():
    for path in sorted(BENCH.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body):
            yield path, tree


def test_every_bench_script_saves_through_the_recorder():
    scripts = dict(_scripts())
    assert {p.name for p in scripts} >= {"ingest_speed.py", "search.py", "keyword_bounds.py",
                                          "keyword_vicov19qa.py", "model_import_speed.py"}
    for path, tree in scripts.items():
        calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        assert {"_record.start", "_record.save"} <= calls, f"{path.name} does not record its result"
