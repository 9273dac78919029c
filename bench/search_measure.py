"""Measuring for bench/search.py: latency percentiles, recall@10 against exact
numpy search, EXPLAIN plans, throughput with concurrent clients, and the plot.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np

from search_load import log


EF_SWEEP = (40, 100, 200, 400)  # hnsw.ef_search values of the recall diagnostic


def pct(values: list[float]) -> dict:
    if not values:
        return {}
    ms = np.asarray(values) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
            "p99": round(float(np.percentile(ms, 99)), 2), "mean": round(float(ms.mean()), 2), "n": len(values)}


# --- measuring --------------------------------------------------------------

class CachedEncoder:
    """encoders.encode_query with precomputed vectors, so vector/hybrid timings
    are database time; the encode row measures the model separately."""

    def __init__(self, original, vectors: dict[str, np.ndarray]):
        self.original, self.vectors = original, vectors

    def __call__(self, space, text):
        v = self.vectors.get(text)
        return v if v is not None else self.original(space, text)


def time_each(fn, items) -> tuple[list[float], list]:
    times, outs = [], []
    for item in items:
        t = time.perf_counter()
        outs.append(fn(item))
        times.append(time.perf_counter() - t)
    return times, outs


def exact_top(vectors: np.ndarray, mask: np.ndarray, qvecs: np.ndarray, k: int = 10) -> list[set[int]]:
    """Exact cosine top-k chunk ids (vectors are unit length) over the masked rows."""
    allowed = np.flatnonzero(mask)
    sub = vectors[allowed] if mask.mean() < 0.999 else vectors
    idx_map = allowed if sub is not vectors else None
    out = []
    for start in range(0, len(qvecs), 16):
        scores = qvecs[start:start + 16] @ sub.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        for row in top:
            ids = idx_map[row] if idx_map is not None else row
            out.append({int(i) + 1 for i in ids})
    return out


def explain_vector(space, query: str, scope, limit: int = 10) -> str:
    """EXPLAIN ANALYZE of the (first) SQL vector_candidates sends."""
    from django.conf import settings
    from django.db import connection, transaction

    from search.services import retrieval

    captured = []

    def wrapper(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        retrieval.vector_candidates(space, query, scope, limit)
    sql, params = next((s, p) for s, p in captured if "search_chunkembedding" in s)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cur.execute(f"SET LOCAL hnsw.ef_search = {max(settings.SEARCH_EF_SEARCH, limit)}")
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
        return _short_plan(cur.fetchall())


def _short_plan(rows) -> str:
    """Plan text with the 384-float query vector literals abbreviated."""
    return re.sub(r"'\[[^\]]{200,}\]'", "'[…query vector…]'", "\n".join(r[0] for r in rows))


def explain_keyword(query: str, allowed) -> str:
    from django.db import connection

    from search.services import keyword_index

    captured = []

    def wrapper(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        keyword_index.keyword_search(query, allowed[0], allowed[1], limit=10)
    found = [(s, p) for s, p in captured if "search_keywordposting" in s]
    if not found:
        return "(no postings query: no query term in the index)"
    sql, params = found[-1]
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
        return _short_plan(cur.fetchall())


def throughput(fn, queries: list[str], clients: int, seconds: float) -> dict:
    """Queries/s with `clients` threads, each with its own Django connection."""
    from django.db import connection

    stop = time.perf_counter() + seconds
    counts, latencies, errors = [0] * clients, [[] for _ in range(clients)], []

    def worker(i: int) -> None:
        try:
            j = i * 37
            while time.perf_counter() < stop:
                t = time.perf_counter()
                fn(queries[j % len(queries)])
                latencies[i].append(time.perf_counter() - t)
                counts[i] += 1
                j += 1
        except Exception as exc:  # noqa: BLE001 — reported, not hidden
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - started
    total = sum(counts)
    return {"clients": clients, "seconds": round(wall, 1), "queries": total, "qps": round(total / wall, 1),
            "latency_ms": pct([x for lat in latencies for x in lat]), "errors": errors[:3]}


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, stats) for name, stats in summary["latency_ms"].items() if stats]
    labels = [name for name, _ in rows]
    x = np.arange(len(rows))
    fig, (ax, rax) = plt.subplots(1, 2, figsize=(max(8, len(rows) * 0.9) + 5, 4.8),
                                  gridspec_kw={"width_ratios": [max(8, len(rows) * 0.9), 5]})
    _plot_recall(summary, rax)
    for j, (p, color) in enumerate((("p50", "#4c72b0"), ("p95", "#dd8452"), ("p99", "#c44e52"))):
        ax.bar(x + (j - 1) * 0.27, [s[p] for _, s in rows], 0.27, label=p, color=color)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ms (log scale)")
    ax.set_title(f"Search latency at {summary['chunks']:,} chunks (one client, warm)")
    for target, label in ((30, "vector target 30 ms"), (150, "API target 150 ms")):
        ax.axhline(target, ls="--", lw=0.8, color="grey")
        ax.text(len(rows) - 0.5, target * 1.05, label, ha="right", fontsize=8, color="grey")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_recall(summary: dict, ax) -> None:
    """recall@10 against hnsw.ef_search per scenario, its p95 on a second axis."""
    twin = ax.twinx()
    ticks: set[int] = set()
    for (name, rec), color in zip(summary.get("recall_at_10", {}).items(), ("#4c72b0", "#dd8452", "#55a868")):
        points = {int(k.split("_")[-1]): v for k, v in rec.items() if k.startswith("ef_search_")}
        if rec.get("ef_search"):
            points.setdefault(int(rec["ef_search"]), {"recall@10": rec["recall@10"],
                                                        "p95_ms": summary["latency_ms"][f"vector/{name}"]["p95"]})
        ef = sorted(points)
        ticks.update(ef)
        ax.plot(ef, [points[e]["recall@10"] for e in ef], "o-", color=color, label=f"recall {name}")
        twin.plot(ef, [points[e]["p95_ms"] for e in ef], "s:", color=color, alpha=0.6)
    ax.axhline(0.95, ls="--", lw=0.8, color="grey")
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("hnsw.ef_search")
    ax.set_ylabel("recall@10 vs exact (solid)")
    twin.set_ylabel("vector p95 ms (dotted)")
    ax.set_title("Recall and latency by ef_search")
    ax.legend(fontsize=8, loc="lower right")



# --- the query sets ---------------------------------------------------------

def database_latency(space, scen: dict, questions: list[str], vectors: np.ndarray, keyword_on: bool,
                     hybrid_depth: int) -> tuple[dict, dict, dict, dict, dict]:
    """Encoding, then vector / keyword / hybrid per scenario with the query vectors
    precomputed: (latency, recall, short result lists, explains, question → vector)."""
    from django.conf import settings
    from django.test import override_settings

    from search.services import encoders, keyword_index, modes, retrieval

    encoders.use_query_threads(1)
    original_encode = encoders.encode_query
    original_encode(space, questions[0])  # load the model
    for q in questions[:20]:
        original_encode(space, q)
    encode_times, qvecs = time_each(lambda q: original_encode(space, q), questions)
    qvec = dict(zip(questions, qvecs))
    qmat = np.stack(qvecs).astype(np.float32)
    latency: dict[str, dict] = {"encode (1 thread)": pct(encode_times)}
    recall: dict[str, dict] = {}
    short: dict[str, int] = {}
    explains: dict[str, str] = {}
    encoders.encode_query = CachedEncoder(original_encode, qvec)
    try:
        for name, sc in scen.items():
            allowed, scope = sc["allowed"], sc["scope"]
            vec = lambda q, a=scope: retrieval.vector_candidates(space, q, a, 10)  # noqa: E731
            time_each(vec, questions)  # warm
            times, results = time_each(vec, questions)
            latency[f"vector/{name}"] = pct(times)
            exact = exact_top(vectors, sc["mask"], qmat)
            hits = [len({c for c, _ in r} & e) / 10 for r, e in zip(results, exact)]
            leaks = sum(1 for r in results for c, _ in r if not sc["mask"][c - 1])
            recall[name] = {"recall@10": round(float(np.mean(hits)), 4),
                            "min": round(float(np.min(hits)), 2),
                            "queries_below_0.8": int(sum(h < 0.8 for h in hits)), "leaked_rows": leaks}
            recall[name]["ef_search"] = settings.SEARCH_EF_SEARCH
            # diagnostic: what another hnsw.ef_search (PORTAL_SEARCH_EF_SEARCH) would buy, and cost
            for ef in EF_SWEEP:
                with override_settings(SEARCH_EF_SEARCH=ef):
                    times_ef, deep = time_each(vec, questions)
                recall[name][f"ef_search_{ef}"] = {
                    "recall@10": round(float(np.mean([len({c for c, _ in r} & e) / 10
                                                      for r, e in zip(deep, exact)])), 4),
                    "p50_ms": pct(times_ef)["p50"], "p95_ms": pct(times_ef)["p95"]}
            short[name] = sum(1 for r in results if len(r) < 10)
            log(f"vector/{name}: {latency[f'vector/{name}']}  recall {recall[name]}  short lists {short[name]}")
            explains[f"vector/{name}"] = explain_vector(space, questions[0], scope)
            if name == "member":
                continue  # the remaining modes: the two headline scenarios only
            if keyword_on:
                kw = lambda q, a=allowed: keyword_index.keyword_search(q, a[0], a[1], limit=10)  # noqa: E731
                time_each(kw, questions)
                times, _ = time_each(kw, questions)
                latency[f"keyword/{name}"] = pct(times)
                log(f"keyword/{name}: {latency[f'keyword/{name}']}")
                explains[f"keyword/{name}"] = explain_keyword(questions[0], allowed)
            hyb = lambda q, a=scope: modes.ranked_chunks(q, "hybrid", a, space, hybrid_depth)  # noqa: E731
            time_each(hyb, questions)
            times, _ = time_each(hyb, questions)
            latency[f"hybrid/{name}"] = pct(times)
            log(f"hybrid/{name}: {latency[f'hybrid/{name}']}")
    finally:
        encoders.encode_query = original_encode
    return latency, recall, short, explains, qvec


def end_to_end_latency(scen: dict, questions: list[str], latency: dict) -> None:
    """search() and POST /api/v1/search with real query encoding, added to `latency`."""
    from django.db import connection
    from django.test import Client

    from search.services.results import run_search

    for name in ("all", "dept"):
        sc = scen[name]
        api = lambda q, s=sc: run_search(s["user"], q, "hybrid", s["filters"])  # noqa: E731
        time_each(api, questions)
        times, results = time_each(api, questions)
        latency[f"api search()/{name}"] = pct(times)
        log(f"api search()/{name}: {latency[f'api search()/{name}']}")
        client = Client()
        client.force_login(sc["user"])
        # the API caps queries at 500 characters (a few test questions are longer)
        body = lambda q, s=sc: {"query": q[:500], "mode": "hybrid",  # noqa: E731
                                "filters": s["filters"].as_dict() if s["filters"] else {}}
        post = lambda q: client.post("/api/v1/search", body(q), content_type="application/json")  # noqa: E731
        status = post(questions[0]).status_code
        if status != 200:
            log(f"POST /api/v1/search answered {status}: skipping the http rows")
            continue
        time_each(post, questions)
        times, responses = time_each(post, questions)
        bad = sum(1 for r in responses if r.status_code != 200)
        latency[f"http POST/{name}"] = pct(times)
        log(f"http POST/{name}: {latency[f'http POST/{name}']} ({bad} non-200)")
        connection.close()


def throughput_rows(space, scen: dict, questions: list[str], qvec: dict, clients: int, seconds: float,
                    hybrid_depth: int) -> dict:
    """Queries/s of vector and hybrid (query vectors precomputed) for the headline scenarios."""
    from search.services import encoders, modes, retrieval

    qps: dict[str, dict] = {}
    original_encode = encoders.encode_query
    encoders.encode_query = CachedEncoder(original_encode, qvec)
    try:
        for name in ("all", "dept"):
            a = scen[name]["scope"]
            qps[f"vector/{name}"] = throughput(
                lambda q, a=a: retrieval.vector_candidates(space, q, a, 10), questions, clients,
                seconds)
            log(f"qps vector/{name}: {qps[f'vector/{name}']}")
            qps[f"hybrid/{name}"] = throughput(
                lambda q, a=a: modes.ranked_chunks(q, "hybrid", a, space, hybrid_depth), questions,
                clients, seconds)
            log(f"qps hybrid/{name}: {qps[f'hybrid/{name}']}")
    finally:
        encoders.encode_query = original_encode
    return qps
