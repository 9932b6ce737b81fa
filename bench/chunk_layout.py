"""Where a chunk's bytes live, against the search's cost: PostgreSQL's CPU per search on the ingested evaluation
corpus (docs/retrieval.md for the ingestion commands) with the chunk table rewritten at each `toast_tuple_target`.

At PostgreSQL's default (2,032 bytes) a chunk's row gives up its embedding and its token signature to the TOAST
table whenever the text comes with them; knowledge migration 0008 sets 8,160, which keeps them in the row.
Each target is set, the table rewritten (`VACUUM FULL`) and analysed, then every question of questions.jsonl
searched as a first question (exactly, and through HNSW), in rounds that alternate the targets. The table is left
at the migration's target.

    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.chunk_layout --bot evalset [--targets 2032 4080 8160]
"""

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATION_TARGET = 8160


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot", required=True, help="slug of a bot whose knowledge base holds the ingested corpus")
    parser.add_argument("--targets", type=int, nargs="+", default=[2032, 4080, MIGRATION_TARGET])
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    from chatbot.ops.embedded import configure_environment

    configure_environment()
    import django

    django.setup()
    from django.db import connection

    from chatbot.models import Bot
    from knowledge import retrieval
    from knowledge.embeddings import get_embedder
    from knowledge.evaluation import questions_load

    knowledge_base_id = Bot.objects.get(slug=arguments.bot).knowledge_base_id
    questions = [q.question for q in questions_load(ROOT / "tests" / "fixtures" / "eval" / "questions.jsonl")]
    embedded = get_embedder(None).embed_queries(questions)
    cursor = connection.cursor()

    def backend_cpu_ms() -> float:
        cursor.execute("SELECT pg_backend_pid()")
        return int(Path(f"/proc/{cursor.fetchone()[0]}/schedstat").read_text().split()[0]) / 1e6

    def layout(target: int) -> dict:
        cursor.execute(f"ALTER TABLE knowledge_chunk SET (toast_tuple_target = {int(target)})")
        cursor.execute("VACUUM FULL knowledge_chunk")
        cursor.execute("ANALYZE knowledge_chunk")
        cursor.execute(
            "SELECT pg_relation_size('knowledge_chunk'), count(*), count(pg_column_toast_chunk_id(embedding)),"
            " count(pg_column_toast_chunk_id(token_signature)) FROM knowledge_chunk WHERE knowledge_base_id = %s",
            [knowledge_base_id],
        )
        heap, chunks, embeddings_outside, signatures_outside = cursor.fetchone()
        return {"heap_mb": round(heap / 2**20, 1), "chunks": chunks, "embeddings_outside_the_row": embeddings_outside,
                "signatures_outside_the_row": signatures_outside}  # fmt: skip

    def searched(exact: bool) -> dict:
        cpu, started = backend_cpu_ms(), time.perf_counter()
        for question, vector in zip(questions, embedded, strict=True):
            retrieval.chunk_search(knowledge_base_id=knowledge_base_id, query=question, k=5, embedding=vector.vector,
                                   query_tokens=vector.tokens, exact=exact)  # fmt: skip
        return {"postgres_cpu_ms": round((backend_cpu_ms() - cpu) / len(questions), 2),
                "wall_ms": round((time.perf_counter() - started) * 1000 / len(questions), 2)}  # fmt: skip

    try:
        for round_number in range(arguments.rounds):
            for target in arguments.targets:
                row = {"round": round_number, "toast_tuple_target": target, **layout(target)}
                searched(True)  # warm
                row |= {"exact": searched(True), "hnsw": searched(False)}
                print(json.dumps(row), flush=True)
    finally:
        layout(MIGRATION_TARGET)


if __name__ == "__main__":
    main()
