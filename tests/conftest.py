import os

import pytest
from hypothesis import settings as hypothesis_settings

# CI replays the same generated examples on every run (a merge is not decided by
# chance); local runs keep exploring new ones. HYPOTHESIS_PROFILE=ci to replay.
hypothesis_settings.register_profile("ci", derandomize=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the shared Redis (test database 1), across tests
    and runs: each test starts with none. A test that stopped Redis has no counters."""
    from django.core.cache import cache

    try:
        cache.clear()
    except Exception:  # noqa: BLE001 - the embedded Redis is down in a fault test
        pass


@pytest.fixture(autouse=True)
def _release_search_thread():
    """Hybrid search's helper thread keeps a connection: close it after each test
    that used it, or the test database cannot be flushed or dropped."""
    yield
    from search.services import retrieval

    if retrieval._search_threads:
        retrieval.release_search_thread()


import signal  # noqa: E402  (the worker fixtures below)
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A real `celery worker` process on the test database and the test queue."""

    def __init__(self, env_overrides: dict[str, str], log_path: Path, args: tuple[str, ...] = ("--pool=solo",)):
        self.env = {**os.environ, **env_overrides}
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "portal", "worker", *self.args, "-l", "info",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"test-{time.time_ns()}@%h"]

    def start(self) -> "WorkerProcess":
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def kill(self) -> None:
        """Simulate losing the machine: SIGKILL the whole process group, no cleanup."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def start_worker(transactional_db, settings, tmp_path):
    """Factory: start_worker(args=("--pool=solo",), **env) → a running worker on the test
    database (args: worker options, e.g. the pool or -Q). Media goes to a folder both
    processes see."""
    from django.db import connection

    workers: list[WorkerProcess] = []
    media = tmp_path / "shared-media"
    settings.MEDIA_ROOT = media

    def start(args: tuple[str, ...] = ("--pool=solo",), **env):
        base = {"PORTAL_DATABASE_NAME": connection.settings_dict["NAME"], "PORTAL_MEDIA_ROOT": str(media),
                "PORTAL_LOG_LEVEL": "INFO"}
        worker = WorkerProcess({**base, **{k: str(v) for k, v in env.items()}},
                               tmp_path / f"worker{len(workers)}.log", args).start()
        workers.append(worker)
        return worker

    _purge_queue()
    yield start
    for worker in workers:
        worker.stop()
    _purge_queue()


def _purge_queue():
    from portal.celery import app

    with app.connection_for_write() as conn:
        for queue in app.conf.task_queues:  # control, ingest, embed, finetune
            try:
                conn.default_channel.queue_purge(queue.name)
            except Exception:  # the queue does not exist yet
                pass


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture(scope="session")
def minilm_path():
    from documents.services.tokens import default_model_path

    return str(default_model_path())


@pytest.fixture(scope="session")
def wide_model_path(tmp_path_factory, minilm_path):
    """A 1024-dimension model built on the fly (MiniLM + a fixed random projection),
    so two spaces of different dimensions live side by side."""
    import torch
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(0)
    base = SentenceTransformer(minilm_path, device="cpu")
    dense = models.Dense(in_features=384, out_features=1024, bias=False, activation_function=torch.nn.Identity())
    model = SentenceTransformer(modules=[base[0], base[1], dense, models.Normalize()], device="cpu")
    path = tmp_path_factory.mktemp("wide-model")
    model.save(str(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory, minilm_path):
    """A cross-encoder with a fresh scoring head on MiniLM's encoder (untrained:
    its scores are arbitrary but deterministic, which is all the tests need)."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder(minilm_path, num_labels=1, device="cpu")
    path = tmp_path_factory.mktemp("cross-encoder")
    model.save(str(path))
    return str(path)
