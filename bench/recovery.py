"""Recovery after faults: a killed worker, a stopped database, a stopped broker.

    .venv/bin/python bench/recovery.py [--docs 12] [--sections 5] [--outage 35] [--model minilm|e5]
        [--scenario NAME ...] [--timeout 900] [--var-dir var/bench-recovery]

Runs in its own var folder (its own embedded PostgreSQL and Redis), never the
portal's. Starts the processes exactly as bin/run does — an ingest worker, an
embed worker (prefork, one slot each) and one beat — with the shipped settings
(heartbeat 10 s, lease 60 s, sweeps every 60 s, retries up to 60 s apart).

Each scenario uploads a batch of new Markdown documents (Vietnamese text, about
1 KB per section; different bytes every time), injects its fault, ends it, and
measures the time from the end of the fault (the process restarted, the server
started again) until every document of the batch is ready with a vector for
each chunk in every serving space. `baseline` is the same batch with no fault.
Then it counts what a user would notice: documents lost (not done within
--timeout), rows doubled (a chunk position stored twice, a chunk with two
vectors in a space, a file stored as two documents), and the extra processing
attempts the recovery cost.

Scenarios:
- baseline: no fault;
- pool-child-killed: SIGKILL the pool process processing a document (the worker's
  main process stays and starts a new one);
- ingest-worker-killed: SIGKILL the whole ingest worker (main process and pool)
  while it processes a document, start it again at once;
- embed-worker-killed: SIGKILL the whole embed worker while it writes vectors,
  start it again at once;
- database-stopped: stop PostgreSQL while the batch is being processed, start it
  again after --outage seconds;
- broker-stopped: stop Redis while the batch is being processed, upload half a
  batch more during the outage (stored, not queued), start Redis after --outage s.

Writes bench/results/recovery.json through bench/_record.py (with the git commit, the machine and the date)
and prints a Markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

SCENARIOS = ["baseline", "pool-child-killed", "ingest-worker-killed", "embed-worker-killed", "database-stopped",
             "broker-stopped"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=12, help="documents per batch")
    parser.add_argument("--sections", type=int, default=5, help="sections (~1 KB each) per document")
    parser.add_argument("--outage", type=float, default=35.0, help="seconds the database / broker stays down")
    parser.add_argument("--model", choices=["minilm", "e5"], default="minilm", help="the active space's model")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a batch after a fault")
    parser.add_argument("--var-dir", default=str(ROOT / "var" / "bench-recovery"))
    parser.add_argument("--name", default="recovery", help="result name: bench/results/<name>.json")
    return parser.parse_args()


ARGS = parse_args()
os.environ["PORTAL_VAR_DIR"] = ARGS.var_dir
os.environ["PORTAL_DEFAULT_EMBEDDING"] = ARGS.model
os.environ.setdefault("PORTAL_LOG_LEVEL", "WARNING")
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
for name in ("PORTAL_DATABASE_NAME", "PORTAL_TASK_QUEUE", "DATABASE_URL", "CELERY_BROKER_URL"):
    os.environ.pop(name, None)  # this bench's own servers and queues only

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from documents.models import Chunk, Document, DocumentStatus  # noqa: E402
from documents.services.heartbeat import holder_pid  # noqa: E402
from documents.services.intake import UploadMetadata, register_upload  # noqa: E402
from portal import embedded  # noqa: E402
from portal.advisory import EMBED_BASE, holder_pids  # noqa: E402
from search.models import ChunkEmbedding  # noqa: E402
from search.services.spaces import serving_spaces  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from faults import long_markdown  # noqa: E402  (the same generator as the fault tests)

VAR = Path(settings.VAR_DIR)
LOGS = VAR / "logs"
QUEUE = settings.CELERY_TASK_DEFAULT_QUEUE
CELERY = [sys.executable, "-m", "celery", "-A", "portal"]
# The commands of bin/run (with -l info: the bench reads "ready." from the logs).
COMMANDS = {
    "ingest": CELERY + ["worker", "-n", "ingest@%h", "-Q", f"{QUEUE}.ingest,{QUEUE}", "--concurrency", "1",
                        "-l", "info"],
    "embed": CELERY + ["worker", "-n", "embed@%h", "-Q", f"{QUEUE}.embed,{QUEUE}.finetune,{QUEUE}",
                       "--concurrency", "1", "-l", "info"],
    "beat": CELERY + ["beat", "-l", "info"],
}


class Processes:
    def __init__(self):
        self.procs: dict[str, subprocess.Popen] = {}
        LOGS.mkdir(parents=True, exist_ok=True)

    def start(self, name: str) -> None:
        log = (LOGS / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(COMMANDS[name], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_ready(self, name: str, since: int, timeout: float = 300) -> None:
        path = LOGS / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in path.read_bytes()[since:].decode(errors="replace"):
                return
            time.sleep(0.2)
        raise SystemExit(f"{name} did not start; see {path}")

    def log_size(self, name: str) -> int:
        path = LOGS / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def restart(self, name: str) -> None:
        since = self.log_size(name)
        self.start(name)
        self.wait_ready(name, since) if name != "beat" else None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


SEED = [int(time.time())]


def upload_batch(n: int) -> list[int]:
    ids = []
    for _ in range(n):
        SEED[0] += 1
        data = long_markdown(ARGS.sections, SEED[0])
        ids.append(register_upload(io.BytesIO(data), f"bench-{SEED[0]}.md",
                                   UploadMetadata(access_level=0)).document.pk)
    return ids


def done(ids: list[int]) -> bool:
    space_ids = list(serving_spaces().values_list("pk", flat=True))
    ready = Document.objects.filter(pk__in=ids, status=DocumentStatus.READY).count()
    if ready < len(ids):
        return False
    chunks = Chunk.objects.filter(document_id__in=ids).count()
    vectors = ChunkEmbedding.objects.filter(document_id__in=ids, space_id__in=space_ids).count()
    return vectors == chunks * len(space_ids)


def wait_done(ids: list[int], timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if done(ids):
                return time.monotonic() - start
        except Exception:  # the database restarting
            connections.close_all()
        time.sleep(0.25)
    return None


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def first_holder(ids: list[int]):
    return (Document.objects.filter(pk__in=ids, status=DocumentStatus.PROCESSING).exclude(holder="")
            .values_list("holder", flat=True).first())


def count(ids: list[int]) -> dict:
    space_ids = list(serving_spaces().values_list("pk", flat=True))
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM (SELECT document_id, ordinal FROM documents_chunk "
                    "WHERE document_id = ANY(%s) GROUP BY 1, 2 HAVING count(*) > 1) t", [ids])
        doubled_chunks = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM (SELECT space_id, chunk_id FROM search_chunkembedding "
                    "WHERE document_id = ANY(%s) GROUP BY 1, 2 HAVING count(*) > 1) t", [ids])
        doubled_vectors = cur.fetchone()[0]
        cur.execute("SELECT count(*) - count(DISTINCT checksum) FROM documents_document WHERE id = ANY(%s)", [ids])
        doubled_documents = cur.fetchone()[0]
    docs = Document.objects.filter(pk__in=ids)
    chunks = Chunk.objects.filter(document_id__in=ids).count()
    vectors = ChunkEmbedding.objects.filter(document_id__in=ids, space_id__in=space_ids).count()
    lost = [d.pk for d in docs if d.status != DocumentStatus.READY]
    lost += [d.pk for d in docs.filter(status=DocumentStatus.READY)
             if ChunkEmbedding.objects.filter(document=d, space_id__in=space_ids).count()
             < d.chunks.count() * len(space_ids)]
    return {"documents": docs.count(), "uploaded": len(ids), "chunks": chunks, "vectors": vectors,
            "expected_vectors": chunks * len(space_ids), "lost_documents": sorted(set(lost)),
            "doubled_rows": doubled_chunks + doubled_vectors + doubled_documents,
            "extra_attempts": sum(d.attempts for d in docs) - docs.count()}


def run_scenario(name: str, procs: Processes) -> dict:
    ids = upload_batch(ARGS.docs)
    t_upload = time.monotonic()
    note = ""
    if name == "baseline":
        fault_end = t_upload
    elif name == "pool-child-killed":
        holder = wait_for(lambda: first_holder(ids), 120, "a document being processed")
        os.kill(holder_pid(holder), signal.SIGKILL)
        fault_end = time.monotonic()
    elif name == "ingest-worker-killed":
        wait_for(lambda: first_holder(ids), 120, "a document being processed")
        procs.kill("ingest")
        fault_end = time.monotonic()
        procs.restart("ingest")
        note = f"worker back after {time.monotonic() - fault_end:.1f} s"
    elif name == "embed-worker-killed":
        space_ids = list(serving_spaces().values_list("pk", flat=True))
        wait_for(lambda: any(holder_pids(EMBED_BASE + s, d) for s in space_ids for d in ids), 300,
                 "vectors being written")
        procs.kill("embed")
        fault_end = time.monotonic()
        procs.restart("embed")
        note = f"worker back after {time.monotonic() - fault_end:.1f} s"
    elif name == "database-stopped":
        wait_for(lambda: first_holder(ids), 120, "a document being processed")
        connections.close_all()
        embedded.stop_postgres(VAR)
        time.sleep(ARGS.outage)
        embedded.ensure_postgres(VAR)
        connections.close_all()
        fault_end = time.monotonic()
    elif name == "broker-stopped":
        wait_for(lambda: first_holder(ids), 120, "a document being processed")
        embedded.stop_redis(VAR)
        t_stop = time.monotonic()
        during = upload_batch(max(1, ARGS.docs // 2))  # stored; queueing fails and is noted on each
        waiting = Document.objects.filter(pk__in=during, queued_at__isnull=True).count()
        note = f"{len(during)} uploaded during the outage, {waiting} of them marked waiting for the queue"
        ids += during
        time.sleep(max(0.0, ARGS.outage - (time.monotonic() - t_stop)))
        embedded.ensure_redis(VAR)
        fault_end = time.monotonic()
    else:
        raise ValueError(name)
    waited = wait_done(ids, ARGS.timeout)
    result = {"scenario": name, "seconds_to_done_after_fault": None if waited is None else round(waited, 1),
              "seconds_from_upload": None if waited is None else round(time.monotonic() - t_upload, 1), "note": note}
    result.update(count(ids))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return result


def main():
    run = _record.start()
    embedded.ensure_postgres(VAR)
    embedded.ensure_redis(VAR)
    call_command("migrate", verbosity=0)
    call_command("space", "ensure-default", "--prefer", ARGS.model)
    procs = Processes()
    try:
        for name in ("ingest", "embed"):
            since = procs.log_size(name)
            procs.start(name)
            procs.wait_ready(name, since)
        procs.start("beat")
        warm = upload_batch(1)  # the embed worker loads its model
        if wait_done(warm, 600) is None:
            raise SystemExit("the warm-up document was not processed; see " + str(LOGS))
        results = [run_scenario(name, procs) for name in (ARGS.scenario or SCENARIOS)]
    finally:
        procs.stop_all()
        connections.close_all()
        embedded.stop_redis(VAR)  # the bench's own servers: do not leave them running
        embedded.stop_postgres(VAR)
    report = {"settings": {"docs": ARGS.docs, "sections": ARGS.sections, "outage_s": ARGS.outage,
                                   "model": ARGS.model, "heartbeat_s": settings.INGEST_HEARTBEAT_SECONDS,
                                   "lease_s": settings.INGEST_LEASE_SECONDS,
                                   "sweep_s": settings.RECOVERY_SWEEP_SECONDS,
                                   "retry_max_delay_s": settings.TASK_RETRY_MAX_DELAY,
                                   "visibility_timeout_s": settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]},
              "results": results}
    _record.save(ARGS.name, report, run)
    print(f"\n{run['started']}, commit {(run['commit'] or '?')[:10]}, {run['machine']['host']}, "
          f"{run['machine']['cpus']} cpus\n")
    print("| scenario | documents | chunks | vectors / expected | done after the fault ends | lost | doubled rows "
          "| extra attempts | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        after = "not within the timeout" if r["seconds_to_done_after_fault"] is None \
            else f"{r['seconds_to_done_after_fault']} s"
        print(f"| {r['scenario']} | {r['documents']} | {r['chunks']} | {r['vectors']} / {r['expected_vectors']} "
              f"| {after} | {len(r['lost_documents'])} | {r['doubled_rows']} | {r['extra_attempts']} "
              f"| {r['note']} |")


if __name__ == "__main__":
    main()
