"""Question embeddings with one torch thread or two, alone or while other work keeps the cores busy.

The figures behind `EMBEDDING_QUERY_THREADS` (default 1): batches of the evaluation questions (1, 5, 20 at a time)
embedded with the local model, 15 times each, p50 and worst time per batch. Run it on a quiet machine, then again
while something else loads both cores (a test run, `bench/run.py`), and compare.

It first checks that embedding a question leaves the other threads alone: a thread that starts after a question
(as a Celery thread ingesting a document does) embeds 128 passages of the evaluation corpus with torch's default
thread count. Before the fix in `LocalEmbedder.query_thread_setup` it ran on one thread: 14.0 chunks/s, not 25.7.

    .venv/bin/python -m bench.embedding_threads
"""

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def ingestion_after_a_question(embedder) -> None:
    import torch

    embedder.embed_query("How long does shipping take?")  # starts the question thread, as a worker's first answer
    corpus = sorted((ROOT / "tests/fixtures/eval/corpus").glob("*.md"))[:8]
    passages = [path.read_text()[start : start + 1000] for path in corpus for start in range(0, 16000, 1000)]

    def ingest() -> tuple[int, float]:
        started = time.perf_counter()
        embedder.embed_documents_with_signatures(passages)
        return torch.get_num_threads(), time.perf_counter() - started

    with ThreadPoolExecutor(1) as new_thread:
        threads, took = new_thread.submit(ingest).result()
    print(f"ingestion in a thread started after a question: {threads} torch threads, "
          f"{len(passages)} passages in {took:.1f} s, {len(passages) / took:.1f} chunks/s")  # fmt: skip


def main() -> None:
    import torch

    from knowledge.embeddings import LocalEmbedder

    embedder = LocalEmbedder()
    questions = [
        json.loads(line)["question"]
        for line in (ROOT / "tests/fixtures/eval/questions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    embedder.embed_queries(questions[:2])  # load the model
    ingestion_after_a_question(embedder)
    for threads in (2, 1):
        torch.set_num_threads(threads)
        for batch in (1, 5, 20):
            timings = []
            for start in range(15):
                started = time.perf_counter()
                embedder.embed_queries(questions[start : start + batch])
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            p50, worst = timings[len(timings) // 2], timings[-1]
            print(f"threads={threads} batch={batch}: p50 {p50:.1f} ms, worst {worst:.1f} ms")


if __name__ == "__main__":
    main()
