"""The HNSW index's build parameters against recall and the walk's cost, on real text embedded by the local model.

The vector half of a question's search walks the HNSW index at `hnsw.ef_search` 200 (knowledge/retrieval.py),
about half of PostgreSQL's CPU per question in the bench. How far the walk must go for a given recall depends on
how well the graph was built (`m`, `ef_construction`). bench/retrieval_scale.py measures recall on synthetic
clustered vectors; this measures it on real embeddings:

- Corpus: the evaluation corpus (tests/fixtures/eval/corpus) and the Markdown and reStructuredText files and
  package descriptions shipped in this virtual environment's site-packages, parsed and chunked as ingestion does,
  embedded in float32 by the configured local backend, in one knowledge base (one table, as the bench's).
- Queries: the evaluation's questions, and as many sentences taken from random chunks of the other texts.
- For each (m, ef_construction): the index is created on the empty table and the rows inserted after it, as
  ingestion does (the insert time is reported against a load without the index). Then for each `ef_search`, the
  search chunk_search serves (knowledge.nearest's `vector_search_prepare` and `nearest_chunks`, 40 candidates):
  recall@10 and recall@40 against an exact scan, the server process's CPU per query (from /proc), and shared
  buffers hit per query.

    .venv/bin/python -m bench.hnsw_build                      # about 6 minutes on 2 cores
    .venv/bin/python -m bench.hnsw_build --builds 16:64 16:128 --ef-search 100 200

Runs on throw-away embedded PostgreSQL and Redis servers in a temporary directory. Prints one JSON report; with
`--output` also writes it to a file.
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
SITE_PACKAGES = Path(np.__file__).resolve().parent.parent
DEFAULT_BUILDS = ["16:64", "16:128", "16:200"]
DEFAULT_EF_SEARCH = [40, 60, 80, 100, 120, 160, 200]
MAX_FILE_BYTES = 400_000


def corpus_files() -> list[tuple[str, bytes]]:
    """(file name, bytes) of the texts to chunk: the evaluation corpus first, then site-packages' documentation."""
    files = [(path.name, path.read_bytes()) for path in sorted((ROOT / "tests/fixtures/eval/corpus").glob("*.md"))]
    seen = set()
    for pattern in ("*.md", "*.rst", "METADATA"):
        for path in sorted(SITE_PACKAGES.rglob(pattern)):
            if "licen" in path.name.lower() or not path.is_file():
                continue
            data = path.read_bytes()
            if not 2_000 <= len(data) <= MAX_FILE_BYTES or data in seen:
                continue
            seen.add(data)
            name = path.name if pattern != "METADATA" else f"{path.parent.name}.md"
            files.append((name, data))
    return files


def corpus_chunks(limit: int) -> tuple[list[str], int]:
    """Embedding texts of the corpus's chunks (at most `limit`), and how many of them are the evaluation corpus's."""
    from knowledge.chunking import chunk_document
    from knowledge.embeddings import local_token_counter
    from knowledge.parsing import DocumentParseError, parse_document

    tokenizer = local_token_counter()
    texts, seen, evaluation = [], set(), 0
    files = corpus_files()
    evaluation_files = len(list((ROOT / "tests/fixtures/eval/corpus").glob("*.md")))
    for number, (name, data) in enumerate(files):
        try:
            document = parse_document(data=data, filename=name)
        except DocumentParseError:
            continue
        for chunk in chunk_document(document, tokenizer=tokenizer):
            if len(chunk.text) < 80 or chunk.embedding_text in seen:
                continue
            seen.add(chunk.embedding_text)
            texts.append(chunk.embedding_text)
            evaluation += number < evaluation_files
            if len(texts) >= limit:
                return texts, evaluation
    return texts, evaluation


def queries(chunks: list[str], evaluation_chunks: int, count: int, rng: np.random.Generator) -> list[str]:
    """The evaluation's questions, then `count` sentences of 6 to 25 words from random chunks of the other texts."""
    questions = [
        json.loads(line)["question"]
        for line in (ROOT / "tests/fixtures/eval/questions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    sentences = []
    others = chunks[evaluation_chunks:]
    while len(sentences) < count and others:
        chunk = others[int(rng.integers(0, len(others)))]
        candidates = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n\n", chunk) if 6 <= len(s.split()) <= 25]
        if candidates:
            sentences.append(candidates[int(rng.integers(0, len(candidates)))])
    return questions + sentences


def backend_cpu_s(cursor) -> float:
    cursor.execute("SELECT pg_backend_pid()")
    fields = Path(f"/proc/{cursor.fetchone()[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_rows(cursor, *, kb_id: int, document_id: int, vectors: np.ndarray) -> float:
    """COPY the vectors into the chunk table; seconds taken."""
    from bench.retrieval_scale import copy_chunks

    started = time.perf_counter()
    copy_chunks(cursor, rows=[(document_id, kb_id, i, f"chunk {i}", vector) for i, vector in enumerate(vectors)])
    return time.perf_counter() - started


def exact_nearest(cursor, *, kb_id: int, literals: list[str], limit: int) -> list[list[int]]:
    cursor.execute("BEGIN")
    cursor.execute("SET LOCAL enable_indexscan = off")
    nearest = []
    for literal in literals:
        cursor.execute(
            "SELECT id FROM knowledge_chunk WHERE knowledge_base_id = %s ORDER BY embedding <=> %s::vector LIMIT %s",
            [kb_id, literal, limit],
        )
        nearest.append([row[0] for row in cursor.fetchall()])
    cursor.execute("COMMIT")
    return nearest


def served_search(cursor, *, kb_id: int, literals: list[str], ef_search: int) -> dict:
    """The vector half as chunk_search serves it through HNSW, at `ef_search`: hits, CPU and buffers per query."""
    from knowledge import retrieval
    from knowledge.nearest import nearest_chunks, nearest_each_sql, vector_search_prepare

    found = []
    cpu_before = backend_cpu_s(cursor)
    started = time.perf_counter()
    for literal in literals:
        cursor.execute("BEGIN")
        vector_search_prepare(cursor, exact=False, ef_search=ef_search, limit=retrieval.CANDIDATES)
        hits = nearest_chunks(cursor, knowledge_base_id=kb_id, vector=literal, limit=retrieval.CANDIDATES)
        found.append([chunk_id for chunk_id, _ in hits])
        cursor.execute("COMMIT")
    wall_s = time.perf_counter() - started
    cpu_s = backend_cpu_s(cursor) - cpu_before
    buffers = []
    for literal in literals[:100]:
        cursor.execute("BEGIN")
        vector_search_prepare(cursor, exact=False, ef_search=ef_search, limit=retrieval.CANDIDATES)
        # The statement `_nearest` sends, explained.
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) " + nearest_each_sql(1),
            [literal, kb_id, retrieval.CANDIDATES],
        )
        buffers.append(cursor.fetchone()[0][0]["Plan"]["Shared Hit Blocks"])
        cursor.execute("COMMIT")
    return {
        "found": found,
        "server_cpu_ms_per_query": round(cpu_s * 1000 / len(literals), 2),
        "wall_ms_per_query": round(wall_s * 1000 / len(literals), 2),
        "buffer_hits_per_query": round(statistics.fmean(buffers)),
    }


def recall(found: list[list[int]], exact: list[list[int]], at: int) -> float:
    return round(statistics.fmean(len(set(f[:at]) & set(e[:at])) / at for f, e in zip(found, exact, strict=True)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=12_000, help="at most this many chunks")
    parser.add_argument("--queries", type=int, default=300, help="sentences added to the evaluation's questions")
    parser.add_argument("--builds", nargs="+", default=DEFAULT_BUILDS, help="m:ef_construction pairs")
    parser.add_argument("--ef-search", type=int, nargs="+", default=DEFAULT_EF_SEARCH)
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="store the bench's synthetic clustered vectors (bench/lib.py seeds its knowledge base with them) instead"
        " of the real chunks' embeddings, as many as --chunks; the queries stay the same real ones",
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    arguments = parser.parse_args()

    with embedded_services("parley-hnsw-build-"):
        from django.core.management import call_command
        from django.db import connection

        from knowledge.embeddings import get_embedder
        from knowledge.models import Document, KnowledgeBase, Source
        from knowledge.nearest import vector_literal

        call_command("migrate", verbosity=0)
        rng = np.random.default_rng(7)
        started = time.perf_counter()
        texts, evaluation_chunks = corpus_chunks(arguments.chunks)
        embedder = get_embedder(None)
        if arguments.synthetic:
            from bench.retrieval_scale import Synthetic

            vectors = Synthetic().vectors(arguments.chunks)
        else:
            vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
        asked = queries(texts, evaluation_chunks, arguments.queries, rng)
        literals = [vector_literal(q.vector) for q in embedder.embed_queries(asked)]
        kind = "synthetic" if arguments.synthetic else f"{evaluation_chunks} of the evaluation corpus"
        print(f"{len(vectors)} chunks ({kind}), {len(asked)} queries, embedded in"
              f" {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip

        kb = KnowledgeBase.objects.create(name="hnsw build")
        source = Source.objects.create(knowledge_base=kb, kind=Source.Kind.FILE, title="real text")
        document = Document.objects.create(source=source, knowledge_base=kb, key="real", title="real text")
        raw = connection.cursor().connection.cursor()
        raw.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
        no_index_s = load_rows(raw, kb_id=kb.id, document_id=document.id, vectors=vectors)
        raw.execute("ANALYZE knowledge_chunk")
        exact = exact_nearest(raw, kb_id=kb.id, literals=literals, limit=40)
        report = {
            "vectors": "synthetic (bench/retrieval_scale.py)" if arguments.synthetic else "real",
            "chunks": len(vectors),
            "evaluation_chunks": evaluation_chunks,
            "queries": len(asked),
            "load_without_index_s": round(no_index_s, 2),
            "builds": [],
        }
        for build in arguments.builds:
            m, ef_construction = (int(part) for part in build.split(":"))
            raw.execute("TRUNCATE knowledge_chunk RESTART IDENTITY CASCADE")
            raw.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
            raw.execute(
                "CREATE INDEX chunk_embedding_hnsw ON knowledge_chunk USING hnsw (embedding vector_cosine_ops)"
                f" WITH (m = {m}, ef_construction = {ef_construction})"
            )
            # Row by row into the index, as ingestion adds chunks; ids restart, so the exact answers still hold.
            insert_s = load_rows(raw, kb_id=kb.id, document_id=document.id, vectors=vectors)
            raw.execute("ANALYZE knowledge_chunk")
            raw.execute("SELECT pg_relation_size('chunk_embedding_hnsw')")
            entry = {
                "m": m,
                "ef_construction": ef_construction,
                "insert_ms_per_chunk": round((insert_s - no_index_s) * 1000 / len(vectors), 3),
                "index_mb": round(raw.fetchone()[0] / 2**20, 1),
                "searches": [],
            }
            for ef_search in arguments.ef_search:
                served_search(raw, kb_id=kb.id, literals=literals[:20], ef_search=ef_search)  # warm
                result = served_search(raw, kb_id=kb.id, literals=literals, ef_search=ef_search)
                found = result.pop("found")
                row = {"ef_search": ef_search, "recall_at_10": recall(found, exact, 10),
                       "recall_at_40": recall(found, exact, 40), **result}  # fmt: skip
                print(json.dumps({"m": m, "ef_construction": ef_construction, **row}), flush=True)
                entry["searches"].append(row)
            report["builds"].append(entry)
            print(json.dumps({key: value for key, value in entry.items() if key != "searches"}), flush=True)
        text = json.dumps(report, indent=2)
        print(text)
        if arguments.output:
            arguments.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
