"""bin/setup (issue 9 item 23): after `bin/test` installed the dev profile,
`bin/run`'s `bin/setup base` does nothing; "first run" is said only when the
virtualenv is created. Runs a copy of the script against stub python/pip."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PIP_STUB = '#!/bin/sh\necho "pip $*" >> "$(dirname "$0")/../../pip-calls"\n'  # → <project>/pip-calls
# `python -m venv .venv` → a .venv whose pip only records its calls
PYTHON_STUB = ('#!/bin/sh\nmkdir -p .venv/bin\nprintf \'#!/bin/sh\\n\' > .venv/bin/python\n'
               f"cat > .venv/bin/pip <<'EOF'\n{PIP_STUB}EOF\nchmod +x .venv/bin/python .venv/bin/pip\n")


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "bin" / "setup", project / "bin" / "setup")
    shutil.copytree(ROOT / "requirements", project / "requirements")
    stub = tmp_path / "python-stub"
    stub.write_text(PYTHON_STUB)
    stub.chmod(0o755)
    return project


def _setup(project: Path, profile: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bin/setup", profile], cwd=project, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": str(project.parent / "python-stub")})


def _requirements_hash(project: Path) -> str:
    data = b"".join(p.read_bytes() for p in sorted((project / "requirements").glob("*.txt")))
    return hashlib.sha256(data).hexdigest()


def test_first_run_creates_the_venv_and_says_so(tmp_path):
    project = _project(tmp_path)
    first = _setup(project, "dev")
    assert first.returncode == 0, first.stderr
    assert "first run" in first.stdout
    assert (project / ".venv" / ".installed-dev").read_text().strip() == _requirements_hash(project)
    assert "-r requirements/dev.txt" in (project / "pip-calls").read_text()


def test_base_after_dev_installs_nothing(tmp_path):
    project = _project(tmp_path)
    _setup(project, "dev")
    (project / "pip-calls").unlink()
    again = _setup(project, "base")
    assert again.returncode == 0 and again.stdout == ""
    assert not (project / "pip-calls").exists()


def test_changed_requirements_update_without_claiming_a_first_run(tmp_path):
    project = _project(tmp_path)
    _setup(project, "base")
    with (project / "requirements" / "base.txt").open("a") as fh:
        fh.write("# changed\n")
    changed = _setup(project, "base")
    assert changed.returncode == 0
    assert "first run" not in changed.stdout and "requirements changed" in changed.stdout
    assert (project / ".venv" / ".installed-base").read_text().strip() == _requirements_hash(project)
