"""The local embedding model on torch and on ONNX Runtime (float32 and int8): speed, memory, agreement, recall.

Timings are interleaved (each round runs every backend once, in turn) so that other load on the machine hits all
of them alike; each figure is a median, and each ratio is the median of the per-round ratios to torch. Memory and
load time come from a fresh process per backend (three each, interleaved).

    .venv/bin/python -m knowledge.onnx_export            # once: the install step makes the ONNX files
    .venv/bin/python -m bench.embedding_backends          # speed, memory, agreement (a few minutes on 2 cores)
    .venv/bin/python -m bench.embedding_backends --recall # and recall@5 on tests/fixtures/eval (about 5 more)
    .venv/bin/python -m bench.embedding_backends --recall-only --recall-chunks onnx  # recall alone, one ingestion

`forward_pass_ms()` is the raw figure other benches print beside theirs, so that runs on machines of different
speed can be compared: one 16-token question through the model on the question thread (one thread by default),
tokenising and pooling included (well under 0.1 ms of it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BACKENDS = ("torch", "onnx", "onnx-int8")
EVAL_DIR = ROOT / "tests" / "fixtures" / "eval"
# 16 word pieces with [CLS] and [SEP], like the question the figures used.
QUESTION_16 = "quickest way to set up logging to a file for a small script"
# For each backend the corpus is ingested with, the (backend, question precision) pairs its questions are embedded
# with in `recall`.
RECALL_CONFIGS = {
    "torch": (("torch", "float32"), ("onnx", "float32"), ("onnx", "int8"), ("onnx-int8", "int8")),
    "onnx": (("onnx", "float32"), ("onnx", "int8")),
    "onnx-int8": (("onnx-int8", "int8"),),
}


def questions() -> list[str]:
    lines = (EVAL_DIR / "questions.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def passages() -> list[str]:
    """128 passages of 1,000 characters of the evaluation corpus (about 250 tokens each), as
    bench/embedding_threads.py ingests."""
    corpus = sorted((EVAL_DIR / "corpus").glob("*.md"))[:8]
    return [path.read_text()[start : start + 1000] for path in corpus for start in range(0, 16000, 1000)]


def on_question_thread(embedder, work):
    """`work()` on a new thread set up as the query batcher sets up its own (`EMBEDDING_QUERY_THREADS`)."""

    def run():
        embedder.query_thread_setup()
        return work()

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(run).result()


def timed_ms(work) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def forward_pass_ms(backend: str | None = None, *, query_precision: str | None = None, repeats: int = 100) -> float:
    """Median time of one 16-token question through the local model on the question thread, in ms. `backend` and
    `query_precision` default to the `EMBEDDING_BACKEND` and `EMBEDDING_QUERY_PRECISION` settings (torch where its
    ONNX file is missing)."""
    from knowledge.embeddings import LocalEmbedder

    embedder = LocalEmbedder(backend=backend, query_precision=query_precision)

    def measure() -> float:
        embedder.embed_queries([QUESTION_16])  # loads the model
        return statistics.median(timed_ms(lambda: embedder.embed_queries([QUESTION_16])) for _ in range(repeats))

    return on_question_thread(embedder, measure)


def paired(timings: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median of each backend's timings, and the median of its per-round ratio to torch."""
    return {
        backend: {
            "median": round(statistics.median(values), 2),
            "ratio_to_torch": round(statistics.median(v / t for v, t in zip(values, timings["torch"], strict=True)), 3),
        }
        for backend, values in timings.items()
    }


def speed(embedders: dict, *, rounds_single: int, rounds_batch: int, rounds_ingestion: int) -> dict:
    batch_of_5 = questions()[:5]
    texts = passages()
    single: dict[str, list[float]] = {backend: [] for backend in embedders}
    five: dict[str, list[float]] = {backend: [] for backend in embedders}
    ingestion: dict[str, list[float]] = {backend: [] for backend in embedders}

    def question_rounds() -> None:
        for round_number in range(max(rounds_single, rounds_batch)):
            order = list(embedders.items())
            order = order[round_number % len(order) :] + order[: round_number % len(order)]
            for backend, embedder in order:
                if round_number < rounds_single:
                    single[backend].append(timed_ms(lambda e=embedder: e.embed_queries([QUESTION_16])))
                if round_number < rounds_batch:
                    five[backend].append(timed_ms(lambda e=embedder: e.embed_queries(batch_of_5)))

    # The question thread of each backend: the torch one sets its thread count there (EMBEDDING_QUERY_THREADS).
    def all_question_rounds() -> None:
        for embedder in embedders.values():
            embedder.query_thread_setup()
            embedder.embed_queries(batch_of_5)
        question_rounds()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(all_question_rounds).result()
    for _ in range(rounds_ingestion):
        for backend, embedder in embedders.items():
            # A thread of its own, as a Celery thread ingesting a document: every core.
            with ThreadPoolExecutor(1) as thread:
                took = thread.submit(timed_ms, lambda e=embedder: e.embed_documents_with_signatures(texts)).result()
            ingestion[backend].append(took)
    chunks_per_s = {
        backend: {
            "median": round(len(texts) / statistics.median(values) * 1000, 1),
            "ratio_to_torch": round(
                statistics.median(t / v for v, t in zip(values, ingestion["torch"], strict=True)), 3
            ),
        }
        for backend, values in ingestion.items()
    }
    return {
        "question_16_tokens_ms": paired(single),
        "batch_of_5_questions_ms": paired(five),
        "ingestion_128_passages_chunks_per_s": chunks_per_s,
        "rounds": {"single": rounds_single, "batch_of_5": rounds_batch, "ingestion": rounds_ingestion},
    }


def agreement(embedders: dict) -> dict:
    import numpy as np

    def cosines(a, b) -> np.ndarray:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    asked, texts = questions(), passages()
    reference_queries = embedders["torch"].embed_queries(asked)
    reference_vectors, reference_signatures = embedders["torch"].embed_documents_with_signatures(texts)
    reference_bits = np.unpackbits(np.frombuffer(b"".join(reference_signatures), dtype=np.uint8))
    report = {}
    for backend, embedder in embedders.items():
        if backend == "torch":
            continue
        queries = embedder.embed_queries(asked)
        vectors, signatures = embedder.embed_documents_with_signatures(texts)
        vector_cosines = np.concatenate(
            [
                cosines([q.vector for q in queries], [q.vector for q in reference_queries]),
                cosines(vectors, reference_vectors),
            ]
        )
        token_cosines = np.concatenate(
            [cosines(q.tokens, r.tokens) for q, r in zip(queries, reference_queries, strict=True)]
        )
        bits = np.unpackbits(np.frombuffer(b"".join(signatures), dtype=np.uint8))
        report[backend] = {
            "vector_cosine_mean": round(float(vector_cosines.mean()), 5),
            "vector_cosine_min": round(float(vector_cosines.min()), 5),
            "question_token_cosine_min": round(float(token_cosines.min()), 5),
            "signature_bits_equal": round(float(np.mean(bits == reference_bits)), 5)
            if len(bits) == len(reference_bits)
            else None,
        }
    return report


MEMORY_CHILD = """
import json, os, sys, time
started = time.perf_counter()
import psutil
from knowledge.embeddings import LocalEmbedder
process = psutil.Process()
imported = time.perf_counter()
rss_imported = process.memory_info().rss
embedder = LocalEmbedder(backend={backend!r}, query_precision="float32")
embedder.embed_query("How long does shipping take?")
loaded = time.perf_counter()
rss_loaded = process.memory_info().rss
from bench.embedding_backends import passages
embedder.embed_documents_with_signatures(passages())
print(json.dumps({{
    "backend": embedder.backend,
    "import_s": imported - started,
    "load_and_first_question_s": loaded - imported,
    "rss_after_import_mb": rss_imported / 2**20,
    "rss_after_first_question_mb": rss_loaded / 2**20,
    "rss_after_ingesting_128_mb": process.memory_info().rss / 2**20,
    # VmHWM, not ru_maxrss: a child started by fork and exec keeps its parent's ru_maxrss.
    "peak_rss_mb": [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024,
}}))
"""


def memory_and_load(*, rounds: int) -> dict:
    runs: dict[str, list[dict]] = {backend: [] for backend in BACKENDS}
    for _ in range(rounds):
        for backend in BACKENDS:
            code = MEMORY_CHILD.format(backend=backend)
            child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
            runs[backend].append(json.loads(child.stdout.strip().splitlines()[-1]))
    report = {}
    for backend, results in runs.items():
        report[backend] = {
            key: round(statistics.median(result[key] for result in results), 2)
            for key in results[0]
            if key != "backend"
        }
        report[backend]["backend_used"] = results[0]["backend"]
    return report


def recall(*, log, chunk_backends: tuple[str, ...] = BACKENDS) -> dict:
    """Recall@5 and MRR on the evaluation set, with the corpus ingested by each of `chunk_backends` and questions
    embedded by the same one, in float32 and in int8 on the "onnx" backend (`EMBEDDING_QUERY_PRECISION`); and,
    since existing installs hold torch-made vectors, torch chunks with ONNX questions.

    What `manage.py evaluate_retrieval` measures (`knowledge.evaluation.retrieval_evaluate`), on one knowledge base
    that is the whole chunk table, as in tests/knowledge/test_retrieval.py, in throw-away embedded PostgreSQL."""
    from bench.throwaway import embedded_services

    with embedded_services("parley-embedding-backends-"):
        return _recall_measured(log=log, chunk_backends=chunk_backends)


def _recall_measured(*, log, chunk_backends: tuple[str, ...]) -> dict:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from knowledge.evaluation import questions_load, retrieval_evaluate
    from knowledge.services import knowledge_base_create, source_add_file, source_ingest

    call_command("migrate", verbosity=0)
    items = questions_load(EVAL_DIR / "questions.jsonl")
    results = []
    for chunks_backend, query_configs in RECALL_CONFIGS.items():
        if chunks_backend not in chunk_backends:
            continue
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE knowledge_knowledgebase, knowledge_term RESTART IDENTITY CASCADE")
        settings.EMBEDDING_BACKEND = chunks_backend  # passages always run in float32 on the "onnx" backend
        started = time.perf_counter()
        knowledge_base = knowledge_base_create(name=f"eval {chunks_backend}")
        chunks = 0
        for path in sorted((EVAL_DIR / "corpus").glob("*.md")):
            source = source_add_file(knowledge_base=knowledge_base, filename=path.name, data=path.read_bytes())
            chunks += source_ingest(source=source).chunks
        ingest_s = time.perf_counter() - started
        log(f"  corpus ingested with {chunks_backend}: {chunks} chunks in {ingest_s:.0f} s")
        for query_backend, query_precision in query_configs:
            settings.EMBEDDING_BACKEND = query_backend
            settings.EMBEDDING_QUERY_PRECISION = query_precision
            questions_by = query_backend if query_backend == "torch" else f"{query_backend} ({query_precision})"
            entry = {"chunks": chunks_backend, "questions": questions_by, "ingest_s": round(ingest_s, 1)}
            for mode in ("hybrid", "vector"):
                result = retrieval_evaluate(knowledge_base_id=knowledge_base.id, questions=items, k=5, mode=mode)
                entry[f"{mode}_recall_at_5"] = round(result.recall_at_k, 3)
                entry[f"{mode}_mrr"] = round(result.mrr, 3)
            log(f"  chunks {chunks_backend}, questions {query_backend}: {entry}")
            results.append(entry)
    return {"questions": len(items), "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recall", action="store_true", help="also measure recall@5 (embedded PostgreSQL)")
    parser.add_argument("--rounds", type=int, default=200, help="rounds of the single-question timing")
    parser.add_argument(
        "--recall-chunks",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="with --recall: the backends to ingest the corpus with (all by default)",
    )
    parser.add_argument("--recall-only", action="store_true", help="recall@5 alone: no speed, agreement or memory")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    arguments = parser.parse_args()

    from knowledge.embeddings import LocalEmbedder

    def log(message: str) -> None:
        print(message, flush=True)

    # Questions on the "onnx" backend in float32 here: int8 questions are the "onnx-int8" graph's.
    embedders = {backend: LocalEmbedder(backend=backend, query_precision="float32") for backend in BACKENDS}
    missing = [backend for backend, embedder in embedders.items() if embedder.backend != backend]
    if missing:
        sys.exit(f"no ONNX export for {', '.join(missing)}: run `.venv/bin/python -m knowledge.onnx_export` first")
    report: dict = {"machine_cpus": os.cpu_count(), "question": QUESTION_16}
    log(f"raw forward pass (16-token question, question thread): {forward_pass_ms():.2f} ms (configured backend)")
    if not arguments.recall_only:
        log("speed (interleaved rounds; ratio = median of per-round ratios to torch)")
        report["speed"] = speed(
            embedders, rounds_single=arguments.rounds, rounds_batch=arguments.rounds // 2, rounds_ingestion=3
        )
        for figure, values in report["speed"].items():
            if figure != "rounds":
                log(
                    f"  {figure}: "
                    + ", ".join(f"{b} {v['median']} (×{v['ratio_to_torch']})" for b, v in values.items())
                )
        log("agreement with torch (97 questions, 128 passages)")
        report["agreement"] = agreement(embedders)
        for backend, values in report["agreement"].items():
            log(f"  {backend}: {values}")
        log("memory and load time (a fresh process per backend, median of 3)")
        report["memory_and_load"] = memory_and_load(rounds=3)
        for backend, values in report["memory_and_load"].items():
            log(f"  {backend}: {values}")
        log(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if arguments.recall or arguments.recall_only:
        log("recall@5 on tests/fixtures/eval (hybrid as served, and the vector half alone)")
        report["recall"] = recall(log=log, chunk_backends=tuple(arguments.recall_chunks))
    log(json.dumps(report))
    if arguments.out:
        arguments.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
