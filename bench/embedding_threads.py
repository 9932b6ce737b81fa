"""Question embeddings with one torch thread or two, alone or while other work keeps the cores busy.

The figures behind `EMBEDDING_QUERY_THREADS` (default 1): batches of the evaluation questions (1, 5, 20 at a time)
embedded with the local model, 15 times each, p50 and worst time per batch. Run it on a quiet machine, then again
while something else loads both cores (a test run, `bench/run.py`), and compare.

    .venv/bin/python bench/embedding_threads.py
"""

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
