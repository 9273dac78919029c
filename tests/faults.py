"""Helpers for the fault tests: stop and start the embedded servers for real, a
beat process, and documents big enough to catch a worker in the middle of one."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

# Worker settings that make the fault paths fast enough for a test: a heartbeat every
# second, retries at most 2 s apart, a sweep every second where a beat runs.
FAST = {"PORTAL_INGEST_HEARTBEAT_SECONDS": 1, "PORTAL_TASK_RETRY_MAX_DELAY": 2, "PORTAL_RECOVERY_SWEEP_SECONDS": 1}


@contextmanager
def postgres_down():
    """Stop the embedded PostgreSQL (the test database's server) and always start it
    again, leaving no broken connection behind in this process."""
    from django.db import connections

    from portal import embedded

    connections.close_all()
    assert embedded.stop_postgres(settings.VAR_DIR), "the embedded PostgreSQL was not running"
    try:
        yield
    finally:
        embedded.ensure_postgres(settings.VAR_DIR)
        connections.close_all()


@contextmanager
def redis_down():
    """Stop the embedded Redis broker and always start it again."""
    from portal import embedded

    assert embedded.stop_redis(settings.VAR_DIR), "the embedded Redis was not running"
    try:
        yield
    finally:
        embedded.ensure_redis(settings.VAR_DIR)


WORDS = ("nhân viên phòng ban quy trình nghỉ phép bảo mật thông tin khách hàng hợp đồng báo cáo tài chính "
         "máy tính phần mềm đào tạo an toàn lao động kiểm tra định kỳ phê duyệt đề nghị chi phí công tác "
         "mạng nội bộ sao lưu dữ liệu hỗ trợ kỹ thuật quản lý rủi ro tuân thủ kế hoạch năm mới").split()


def long_markdown(sections: int, seed: int, sentences: int = 12) -> bytes:
    """A Vietnamese Markdown document, about 1 KB per section, different for every seed."""
    rnd = random.Random(seed)
    parts = [f"# Tài liệu thử nghiệm {seed}\n"]
    for number in range(1, sections + 1):
        parts.append(f"\n## {number}. Mục {number}\n\n")
        for _ in range(sentences):
            parts.append(" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(8, 20))).capitalize() + ". ")
        parts.append("\n")
    return "".join(parts).encode()


class BeatProcess:
    """A real `celery beat` on the test database."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "BeatProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "beat", "-l", "info"],
            cwd=ROOT, env=self.env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sent(self) -> int:
        return self.log().count("Sending due task")

    def kill(self) -> None:
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


def wait_for_log(process, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in process.log():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {text!r} in the log:\n{process.log()[-3000:]}")
