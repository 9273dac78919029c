"""bin/run as a user runs it (issue 9 S10, item 23): it serves on its port, and
SIGTERM — or the death of one of its services — stops the web server, the
worker, beat and the embedded services, leaving nothing running or listening.
Runs the real script with its own PORTAL_VAR_DIR (own PostgreSQL and Redis)
on a free loopback port; PORTAL_SKIP_SAMPLES keeps it to about half a minute."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _home_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


class BinRun:
    def __init__(self, **env_overrides):
        # Not under pytest's tmp_path: pytest resets its base folder to 0700 when
        # any session starts, and the embedded PostgreSQL runs as another user.
        self.root = Path(tempfile.mkdtemp(prefix="portal-run-", dir="/tmp"))
        self.var = self.root / "var"
        self.port = _free_port()
        self.log = self.root / "bin-run.log"
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "PORTAL_DATABASE_NAME", "PORTAL_MEDIA_ROOT")}
        self.env = {**env, "PORTAL_VAR_DIR": str(self.var), "PORTAL_BIND": f"127.0.0.1:{self.port}",
                    "PORTAL_SKIP_SAMPLES": "1", "PORTAL_WEB_WORKERS": "1", "PORTAL_DEFAULT_EMBEDDING": "minilm",
                    "PORTAL_TASK_QUEUE": f"bin-run-{self.port}", "PORTAL_LOG_LEVEL": "INFO", **env_overrides}
        self.proc = subprocess.Popen(["bin/run"], cwd=ROOT, env=self.env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_serving(self) -> None:
        def up():
            assert self.proc.poll() is None, self.output()[-8000:]
            return _home_answers(self.port)
        wait_until(up, timeout=240, interval=0.5, message="bin/run to serve its start page")
        self.children = psutil.Process(self.proc.pid).children(recursive=True)

    def service_pids(self) -> list[int]:
        pids = []
        for pidfile in (self.var / "pgdata" / "postmaster.pid", self.var / "redis" / "redis.pid"):
            try:
                pids.append(int(pidfile.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
        return pids

    def close(self) -> None:
        """Whatever the test's outcome, leave nothing behind."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for child in self.children:  # whatever bin/run failed to stop
            try:
                child.kill()
            except psutil.Error:
                pass
        subprocess.run([sys.executable, "manage.py", "services", "stop"], cwd=ROOT, env=self.env,
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    children: list = []


@pytest.fixture
def bin_run():
    run = BinRun()
    try:
        yield run
    finally:
        run.close()


def _alive(processes) -> list[str]:
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def _assert_all_stopped(run: BinRun, children, services) -> None:
    assert not _listening(run.port), "something still listens on the portal's port"
    assert _alive(children) == [], run.output()[-3000:]
    assert not [pid for pid in services if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE], "embedded services left running"
    assert "embedded PostgreSQL stopped" in run.output() and "embedded Redis stopped" in run.output()


def test_sigterm_stops_web_worker_beat_and_services(bin_run):
    bin_run.wait_until_serving()
    children = bin_run.children
    names = " ".join(" ".join(p.cmdline()) for p in children)
    # web, the ingest and embed workers, beat in its own process
    assert "gunicorn" in names and "-n ingest@" in names and "-n embed@" in names and "portal beat" in names
    services = bin_run.service_pids()
    assert len(services) == 2

    started = time.monotonic()
    bin_run.proc.send_signal(signal.SIGTERM)
    assert bin_run.proc.wait(90) == 143
    assert time.monotonic() - started < 60
    _assert_all_stopped(bin_run, children, services)

    # One log time format in gunicorn's master and its worker: UTC with its offset.
    web = [line for line in bin_run.output().splitlines() if "gunicorn." in line]
    master = [line for line in web if "Listening at" in line]
    worker = [line for line in web if "Booting worker" in line]
    assert master and worker and len(web) >= 4
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 \[\d+\] ")
    assert all(stamp.match(line) for line in web), web
    # The worker warmed up the search model without drawing progress bars.
    served = bin_run.output().split("Booting worker", 1)[1]
    assert "Loading weights" not in served and "it/s]" not in served


def test_a_service_that_dies_stops_the_rest():
    bin_run = BinRun(PORTAL_WARM_UP_MODELS="0")
    try:
        _a_service_that_dies_stops_the_rest(bin_run)
    finally:
        bin_run.close()


def _a_service_that_dies_stops_the_rest(bin_run):
    bin_run.wait_until_serving()
    children = bin_run.children
    services = bin_run.service_pids()
    web = next(p for p in children if "gunicorn" in " ".join(p.cmdline()) and p.ppid() == bin_run.proc.pid)
    web.kill()
    assert bin_run.proc.wait(90) == 1
    assert "web exited" in bin_run.output()
    _assert_all_stopped(bin_run, children, services)
