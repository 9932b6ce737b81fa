"""Retrieval at scale on synthetic chunks: search latency, HNSW recall against exact search, EXPLAIN plans.

Runs against throw-away embedded PostgreSQL and Redis servers in a temporary data directory, which it stops and
deletes at the end. For each size the chunk table holds `size` chunks spread over 50 knowledge bases: one "big"
one with half of them, 49 small ones sharing the rest. Vectors are clustered (random centroids plus noise, unit
length) like real embeddings; texts are Zipf-distributed words of the evaluation corpus. The HNSW index is built
after the bulk load, then 2% more rows are inserted into every knowledge base, to check that rows added after the
index was built are still found.

    .venv/bin/python -m bench.retrieval_scale                          # 10k and 100k (about 10 minutes on 2 cores)
    .venv/bin/python -m bench.retrieval_scale --sizes 10000 100000 1000000

Writes bench/results/retrieval_scale.json and, for the largest size, bench/results/retrieval_explain.txt.
Database time is what `chunk_search` reports as `search_ms` (everything after the query's embedding); the
embedding time of real questions with the local model is measured separately.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np

from bench.throwaway import embedded_services

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KNOWLEDGE_BASES = 50
LATE_SHARE = 0.02
QUERIES = 200
RECALL_AT = 10
EF_SEARCH_VALUES = [40, 100, 200, 400]
DIMENSIONS = 384
WORDS_PER_CHUNK = 60


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))], 2)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class Synthetic:
    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.centroids = unit(self.rng.standard_normal((2000, DIMENSIONS)).astype(np.float32))
        corpus = " ".join(p.read_text() for p in (ROOT / "tests/fixtures/eval/corpus").glob("*.md")).lower()
        words, counts = np.unique(re.findall(r"[a-z]{3,}", corpus), return_counts=True)
        order = np.argsort(-counts)
        self.words = words[order]
        ranks = np.arange(1, len(self.words) + 1)
        self.word_p = (1 / ranks) / (1 / ranks).sum()
        self.frequency = dict(zip(self.words.tolist(), self.word_p.tolist(), strict=True))

    def vectors(self, n: int) -> np.ndarray:
        centroid = self.centroids[self.rng.integers(0, len(self.centroids), n)]
        noise = self.rng.standard_normal((n, DIMENSIONS)).astype(np.float32) * (0.6 / DIMENSIONS**0.5)
        return unit(centroid + noise)

    def texts(self, n: int) -> list[str]:
        picks = self.rng.choice(len(self.words), size=(n, WORDS_PER_CHUNK), p=self.word_p)
        return [" ".join(self.words[row]) for row in picks]

    def query_near(self, vector: np.ndarray) -> np.ndarray:
        noise = self.rng.standard_normal(DIMENSIONS).astype(np.float32) * (0.3 / DIMENSIONS**0.5)
        return unit((vector + noise)[None])[0]


def copy_chunks(cursor, *, rows: list[tuple[int, int, int, str, np.ndarray]]) -> None:
    with cursor.copy(
        "COPY knowledge_chunk (document_id, knowledge_base_id, position, text, heading_path, heading_text,"
        " token_count, text_hash, embedding) FROM STDIN"
    ) as copy:
        for document_id, kb_id, position, text, vector in rows:
            literal = "[" + ",".join(f"{value:.5f}" for value in vector) + "]"
            copy.write_row((document_id, kb_id, position, text, "[]", "", WORDS_PER_CHUNK, "-", literal))


def load(*, size: int, synthetic: Synthetic, log) -> dict:
    from django.db import connection

    from knowledge.models import Document, KnowledgeBase, Source

    knowledge_bases, documents = [], []
    for number in range(KNOWLEDGE_BASES):
        kb = KnowledgeBase.objects.create(name=f"kb{number}")
        source = Source.objects.create(knowledge_base=kb, kind=Source.Kind.FILE, title="synthetic")
        documents.append(Document.objects.create(source=source, knowledge_base=kb, key="synthetic", title="t").id)
        knowledge_bases.append(kb.id)
    big_rows = size // 2
    per_small = (size - big_rows) // (KNOWLEDGE_BASES - 1)
    counts = [big_rows] + [per_small] * (KNOWLEDGE_BASES - 1)
    started = time.perf_counter()
    raw = connection.cursor().connection.cursor()
    raw.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
    batch = 20_000
    for kb_id, document_id, count in zip(knowledge_bases, documents, counts, strict=True):
        for offset in range(0, count, batch):
            n = min(batch, count - offset)
            vectors, texts = synthetic.vectors(n), synthetic.texts(n)
            copy_chunks(raw, rows=[(document_id, kb_id, offset + i, texts[i], vectors[i]) for i in range(n)])
    loaded = time.perf_counter()
    log(f"  loaded {size} rows in {loaded - started:.0f} s; building the HNSW index")
    # The graph must fit in maintenance_work_mem or the build spills and slows several times over: about 3 KB a
    # row at 384 dimensions and m = 16 (1M rows: 4 GB, which this 24 GB machine has).
    raw.execute(f"SET maintenance_work_mem = '{max(1, -(-size * 4 // 1_000_000))}GB'")
    raw.execute("SET max_parallel_maintenance_workers = 2")
    raw.execute(
        "CREATE INDEX chunk_embedding_hnsw ON knowledge_chunk USING hnsw (embedding vector_cosine_ops)"
        " WITH (m = 16, ef_construction = 64)"
    )
    built = time.perf_counter()
    log(f"  index built in {built - loaded:.0f} s; inserting {LATE_SHARE:.0%} more rows after it")
    for kb_id, document_id, count in zip(knowledge_bases, documents, counts, strict=True):
        n = max(1, int(count * LATE_SHARE))
        vectors, texts = synthetic.vectors(n), synthetic.texts(n)
        copy_chunks(raw, rows=[(document_id, kb_id, count + i, texts[i], vectors[i]) for i in range(n)])
    raw.execute("ANALYZE knowledge_chunk")
    raw.execute(
        "SELECT c.knowledge_base_id, array_agg(c.id) FROM knowledge_chunk c"
        " JOIN (SELECT knowledge_base_id, max(position) AS top FROM knowledge_chunk GROUP BY 1) m"
        "   ON m.knowledge_base_id = c.knowledge_base_id"
        " WHERE c.position > m.top - %s GROUP BY 1",
        [max(1, int(per_small * LATE_SHARE))],
    )
    late = {kb_id: ids for kb_id, ids in raw.fetchall()}
    return {
        "knowledge_bases": knowledge_bases,
        "big": knowledge_bases[0],
        "counts": counts,
        "late": late,
        "load_seconds": round(loaded - started, 1),
        "index_seconds": round(built - loaded, 1),
    }


def vector_of(cursor, chunk_id: int) -> np.ndarray:
    cursor.execute("SELECT embedding::text FROM knowledge_chunk WHERE id = %s", [chunk_id])
    return np.array(json.loads(cursor.fetchone()[0]), dtype=np.float32)


def query_plan(*, knowledge_bases: list[int], counts: list[int], big: int, late: dict[int, list[int]], synthetic):
    """(knowledge base, query vector, query text) triples: half near a random row of the big knowledge base, half
    near rows of small ones, a quarter of all near rows inserted after the index was built."""
    from django.db import connection

    rng = synthetic.rng
    plan = []
    with connection.cursor() as cursor:
        for number in range(QUERIES):
            index = 0 if number % 2 == 0 else 1 + int(rng.integers(0, len(knowledge_bases) - 1))
            kb_id = knowledge_bases[index]
            if number % 4 < 2:
                chunk_id = int(rng.choice(late[kb_id]))
            else:
                cursor.execute(
                    "SELECT id FROM knowledge_chunk WHERE knowledge_base_id = %s AND position = %s",
                    [kb_id, int(rng.integers(0, counts[index]))],
                )
                chunk_id = cursor.fetchone()[0]
            cursor.execute("SELECT text FROM knowledge_chunk WHERE id = %s", [chunk_id])
            words = cursor.fetchone()[0].split()
            # Like a real question: two of the passage's most distinctive words and four others.
            distinctive = sorted(set(words), key=synthetic.frequency.get)[:2]
            text = " ".join([*distinctive, *rng.choice(words, 4, replace=False)])
            plan.append((kb_id, synthetic.query_near(vector_of(cursor, chunk_id)), text, number % 4 < 2))
    return plan


def exact_nearest(plan) -> list[set[int]]:
    """The true RECALL_AT nearest rows of each query's knowledge base, by a scan of all its rows."""
    from django.db import connection, transaction

    from knowledge.nearest import vector_literal

    nearest = []
    for kb_id, vector, _, _ in plan:
        with transaction.atomic(), connection.cursor() as cursor:
            # No index scans: the HNSW index cannot be used, every row of the knowledge base is compared.
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("SET LOCAL enable_indexonlyscan = off")
            cursor.execute(
                "SELECT id, embedding <=> %s::vector AS distance FROM knowledge_chunk WHERE knowledge_base_id = %s"
                " ORDER BY distance LIMIT %s",
                [vector_literal(vector.tolist()), kb_id, RECALL_AT],
            )
            nearest.append({row[0] for row in cursor.fetchall()})
    return nearest


def served_recall(plan, exact: list[set[int]], *, big: int) -> dict:
    """Recall@10 of the vector search chunk_search actually runs (HNSW or an exact scan, as `vector_search_plan`
    picks for the knowledge base) against the true nearest rows: what a visitor's question gets."""
    from django.db import connection, transaction

    from knowledge import retrieval
    from knowledge.nearest import nearest_chunks, vector_literal, vector_search_prepare

    recalls: dict[str, list[float]] = {"all": [], "big_kb": [], "small_kbs": []}
    paths: dict[str, set[str]] = {"big_kb": set(), "small_kbs": set()}
    for (kb_id, vector, _, _), truth in zip(plan, exact, strict=True):
        label = "big_kb" if kb_id == big else "small_kbs"
        with transaction.atomic(), connection.cursor() as cursor:
            plan = retrieval.vector_search_plan(cursor, kb_id)
            # As chunk_search runs it: the planner set for the plan, then the nearest chunks.
            vector_search_prepare(cursor, exact=plan.exact, ef_search=plan.ef_search, limit=retrieval.CANDIDATES)
            hits = nearest_chunks(
                cursor, knowledge_base_id=kb_id, vector=vector_literal(vector.tolist()),
                limit=retrieval.CANDIDATES,
            )  # fmt: skip
        paths[label].add("exact" if plan.exact else f"hnsw (ef_search {plan.ef_search})")
        recall = len(truth & {chunk_id for chunk_id, _ in hits[:RECALL_AT]}) / len(truth)
        recalls["all"].append(recall)
        recalls[label].append(recall)
    return {
        "recall_at_10": round(statistics.fmean(recalls["all"]), 4),
        "recall_at_10_big_kb": round(statistics.fmean(recalls["big_kb"]), 4),
        "recall_at_10_small_kbs": round(statistics.fmean(recalls["small_kbs"]), 4),
        "path_big_kb": "/".join(sorted(paths["big_kb"])),
        "path_small_kbs": "/".join(sorted(paths["small_kbs"])),
    }


def hnsw_recall(plan, exact_nearest_rows: list[set[int]], *, ef_search: int, iterative: str) -> dict:
    from django.db import connection, transaction

    from knowledge.nearest import vector_literal

    recalls, timings, recalls_small, recalls_late, recalls_big = [], [], [], [], []
    for (kb_id, vector, _, near_late), exact in zip(plan, exact_nearest_rows, strict=True):
        literal = vector_literal(vector.tolist())
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL hnsw.ef_search = %s", [ef_search])
            cursor.execute(f"SET LOCAL hnsw.iterative_scan = {iterative}")
            # Force the index even where the planner would rather scan a small knowledge base exactly: this
            # measures the index, not the planner.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            started = time.perf_counter()
            # The shape chunk_search uses: 40 candidates from the index, re-sorted (relaxed_order may return them
            # slightly out of order), the best 10 kept.
            cursor.execute(
                "SELECT id FROM ("
                "  SELECT id, embedding <=> %s::vector AS distance FROM knowledge_chunk WHERE knowledge_base_id = %s"
                "  ORDER BY embedding <=> %s::vector LIMIT 40"
                ") AS nearest ORDER BY distance LIMIT %s",
                [literal, kb_id, literal, RECALL_AT],
            )
            found = {row[0] for row in cursor.fetchall()}
            timings.append((time.perf_counter() - started) * 1000)
        recall = len(exact & found) / len(exact)
        recalls.append(recall)
        (recalls_small if kb_id != plan[0][0] else recalls_big).append(recall)
        if near_late:
            recalls_late.append(recall)
    return {
        "ef_search": ef_search,
        "iterative_scan": iterative,
        "recall_at_10": round(statistics.fmean(recalls), 4),
        "recall_at_10_big_kb": round(statistics.fmean(recalls_big), 4),
        "recall_at_10_small_kbs": round(statistics.fmean(recalls_small), 4),
        "recall_at_10_near_late_rows": round(statistics.fmean(recalls_late), 4),
        "min_recall": round(min(recalls), 2),
        "p50_ms": percentile(timings, 0.5),
        "p95_ms": percentile(timings, 0.95),
    }


def search_latency(plan, *, big: int) -> dict:
    """chunk_search's database time (search_ms) per mode on the big knowledge base (HNSW) and the small ones
    (exact scans), the synthetic vector given as the query's embedding."""
    from knowledge import retrieval

    results = {}
    for mode in ("hybrid", "vector", "text"):
        for label, wanted in (("big_kb", True), ("small_kbs", False)):
            timings, vector_ms, text_ms = [], [], []
            for kb_id, vector, text, _ in plan:
                if (kb_id == big) != wanted:
                    continue
                result = retrieval.chunk_search(
                    knowledge_base_id=kb_id, query=text, k=5, mode=mode, embedding=vector.tolist()
                )
                timings.append(result.search_ms)
                # A half the mode does not run is not timed: it took nothing.
                vector_ms.append(result.timings.get("vector_ms", 0.0))
                text_ms.append(result.timings.get("text_ms", 0.0))
            results[f"{mode}_{label}"] = {
                "p50_ms": percentile(timings, 0.5),
                "p95_ms": percentile(timings, 0.95),
                "vector_half_p95_ms": percentile(vector_ms, 0.95),
                "text_half_p95_ms": percentile(text_ms, 0.95),
            }
    return results


def explain(plan, *, big: int) -> str:
    from django.db import connection, transaction

    from knowledge import full_text, retrieval
    from knowledge.nearest import vector_literal

    kb_id, vector, text, _ = next(item for item in plan if item[0] == big)
    literal = vector_literal(vector.tolist())
    lines = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [retrieval.vector_search_plan(cursor, kb_id).ef_search])
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT id, distance FROM ("
            "  SELECT id, embedding <=> %s::vector AS distance FROM knowledge_chunk"
            "  WHERE knowledge_base_id = %s ORDER BY embedding <=> %s::vector LIMIT 40"
            ") AS nearest ORDER BY distance",
            [literal, kb_id, literal],
        )
        lines += ["-- vector half, big knowledge base (HNSW path)", *[row[0] for row in cursor.fetchall()], ""]
        real_execute = cursor.execute
        captured = []

        def capture(sql, params=None):
            if "search_vector @@" in sql and "scored" in sql:
                real_execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                captured.extend(row[0] for row in cursor.fetchall())
                return real_execute(sql, params)
            return real_execute(sql, params)

        cursor.execute = capture
        full_text.text_search(cursor, knowledge_base_id=kb_id, query=text, limit=40)
        cursor.execute = real_execute
        lines += [f"-- text half, big knowledge base, query {text!r}", *captured, ""]
    return "\n".join(lines)


def embedding_timings() -> dict:
    from knowledge.embeddings import get_embedder

    embedder = get_embedder(None)
    questions = [
        json.loads(line)["question"]
        for line in (ROOT / "tests/fixtures/eval/questions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    embedder.embed_query("warm up")
    timings = []
    for question in questions:
        started = time.perf_counter()
        embedder.embed_query(question)
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(timings, 0.5), "p95_ms": percentile(timings, 0.95), "n": len(timings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--replace", action="store_true", help="write only the sizes run now (default: keep other sizes' figures)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory and servers (debugging)")
    arguments = parser.parse_args()

    with embedded_services("parley-retrieval-scale-", keep=arguments.keep):
        run(arguments)


def run(arguments: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection

    def log(message: str) -> None:
        print(message, flush=True)

    report = {"machine_cpus": os.cpu_count(), "sizes": [], "embedding": None}
    call_command("migrate", verbosity=0)
    log("embedding time of the 97 evaluation questions (local model)")
    report["embedding"] = embedding_timings()
    for size in sorted(arguments.sizes):
        log(f"size {size}")
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE knowledge_knowledgebase, knowledge_term RESTART IDENTITY CASCADE")
        synthetic = Synthetic()
        loaded = load(size=size, synthetic=synthetic, log=log)
        plan = query_plan(
            knowledge_bases=loaded["knowledge_bases"],
            counts=loaded["counts"],
            big=loaded["big"],
            late=loaded["late"],
            synthetic=synthetic,
        )
        entry = {
            "size": size,
            "chunks": size + sum(len(ids) for ids in loaded["late"].values()),
            "load_seconds": loaded["load_seconds"],
            "index_build_seconds": loaded["index_seconds"],
            "big_kb_chunks": loaded["counts"][0],
            "small_kb_chunks": loaded["counts"][1],
            "hnsw": [],
        }
        started = time.perf_counter()
        exact = exact_nearest(plan)
        log(f"  exact nearest rows of {len(plan)} queries in {time.perf_counter() - started:.0f} s")
        entry["served"] = served_recall(plan, exact, big=loaded["big"])
        log(f"  served {entry['served']}")
        for ef_search in EF_SEARCH_VALUES:
            for iterative in ("off", "relaxed_order"):
                row = hnsw_recall(plan, exact, ef_search=ef_search, iterative=iterative)
                log(f"  {row}")
                entry["hnsw"].append(row)
        entry["search"] = search_latency(plan, big=loaded["big"])
        log(f"  search {entry['search']}")
        report["sizes"].append(entry)
        if size == max(arguments.sizes):
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "retrieval_explain.txt").write_text(
                f"-- {entry['chunks']} chunks in {KNOWLEDGE_BASES} knowledge bases\n" + explain(plan, big=loaded["big"])
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "retrieval_scale.json"
    if path.exists() and not arguments.replace:
        # Sizes not run this time keep their earlier figures (a 1M run takes most of an hour on its own).
        earlier = json.loads(path.read_text()).get("sizes", [])
        measured = {entry["size"] for entry in report["sizes"]}
        kept = [entry for entry in earlier if entry.get("size", entry["big_kb_chunks"] * 2) not in measured]
        report["sizes"] = sorted(kept + report["sizes"], key=lambda entry: entry["chunks"])
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {RESULTS / 'retrieval_scale.json'}")


if __name__ == "__main__":
    main()
