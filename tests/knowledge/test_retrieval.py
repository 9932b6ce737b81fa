"""Retrieval on the real database with the real embedding model: hybrid search, its statistics, HNSW and plans.

The evaluation corpus (tests/fixtures/eval) is ingested once for the module, committed, and deleted at the end;
every test runs in a transaction that is rolled back, so what a test adds never leaks into the next.
"""

import re
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from knowledge import retrieval
from knowledge.embeddings import EMBEDDING_DIMENSIONS, get_embedder
from knowledge.evaluation import conversations_evaluate, conversations_load, questions_load, retrieval_evaluate
from knowledge.models import Chunk, Document, KnowledgeBase, Source, Term
from knowledge.nearest import vector_literal
from knowledge.retrieval import chunk_search
from knowledge.services import knowledge_base_create, source_add_faq, source_add_file, source_delete, source_ingest
from tests.knowledge.embedding_wait import EmbeddingDoneWhenAskedFor

EVAL_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "eval"

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def evalset(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        knowledge_base = knowledge_base_create(name="evalset")
        for path in sorted((EVAL_DIR / "corpus").glob("*.md")):
            source = source_add_file(knowledge_base=knowledge_base, filename=path.name, data=path.read_bytes())
            source_ingest(source=source)
    yield knowledge_base
    with django_db_blocker.unblock():
        for source in Source.objects.filter(knowledge_base=knowledge_base):
            source_delete(source=source)
        knowledge_base.delete()


def term_counts(knowledge_base_id: int) -> dict[str, int]:
    return dict(Term.objects.filter(knowledge_base_id=knowledge_base_id, chunks__gt=0).values_list("lexeme", "chunks"))


def term_counts_recomputed(knowledge_base_id: int) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT lexeme, count(*) FROM knowledge_chunk, unnest(tsvector_to_array(search_vector)) AS lexeme"
            " WHERE knowledge_base_id = %s GROUP BY 1 UNION ALL"
            " SELECT '', count(*) FROM knowledge_chunk WHERE knowledge_base_id = %s HAVING count(*) > 0",
            [knowledge_base_id, knowledge_base_id],
        )
        return dict(cursor.fetchall())


def test_a_vector_is_sent_as_pgvectors_text_with_seven_significant_digits_a_number():
    embedding = np.array([0.5, -1e-8, 1 / 3, 0.0, 123456789.0], dtype=np.float32)

    sent = vector_literal(embedding.tolist())

    assert sent == "[0.5,-1e-08,0.3333333,0,1.234568e+08]"
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::vector::text", [sent])
        assert cursor.fetchone()[0] == "[0.5,-1e-08,0.3333333,0,1.234568e+08]"


def test_it_finds_the_passage_that_answers_with_its_title_and_heading_path(evalset):
    result = chunk_search(knowledge_base_id=evalset.id, query="pause my program for half a second", k=5)

    assert result.relevant
    best = result.chunks[0]
    assert "Delay execution for a given number of seconds." in best.text
    assert (best.title, best.heading_path, best.url) == ("time", ["Functions", "sleep"], "")
    assert best.similarity > retrieval.MIN_RELEVANCE
    assert result.embed_ms > 0 and result.search_ms > 0


def test_the_text_half_runs_while_the_questions_embedding_is_still_being_computed(evalset):
    question = "pause my program for half a second"
    embedded_already = get_embedder(None).embed_queries([question])[0]
    embedding_soon: Future = Future()
    statements_before_the_embedding: list[str] = []

    def embedding_finishes_after_the_text_half(execute, sql, params, many, context):
        if not embedding_soon.done():
            statements_before_the_embedding.append(sql)
            if "AS scored" in sql:  # the full-text ranking, the text half's last statement
                result = execute(sql, params, many, context)
                embedding_soon.set_result(embedded_already)
                return result
        return execute(sql, params, many, context)

    # A search that waited for the embedding first would wait for good: the embedding then arrives late instead.
    late = threading.Timer(5.0, lambda: embedding_soon.done() or embedding_soon.set_result(embedded_already))
    late.start()
    with connection.execute_wrapper(embedding_finishes_after_the_text_half):
        result = chunk_search(knowledge_base_id=evalset.id, query=question, k=5, embedding_soon=embedding_soon)
    late.cancel()

    assert not any("<=>" in sql for sql in statements_before_the_embedding)
    assert any("AS scored" in sql for sql in statements_before_the_embedding)
    assert result.chunks == chunk_search(knowledge_base_id=evalset.id, query=question, k=5).chunks
    assert "Delay execution for a given number of seconds." in result.chunks[0].text


def test_a_question_whose_embedding_failed_is_embedded_again_by_the_search(evalset):
    failed: Future = Future()
    failed.set_exception(RuntimeError("the embedding thread was interrupted"))

    result = chunk_search(
        knowledge_base_id=evalset.id, query="pause my program for half a second", k=5, embedding_soon=failed
    )

    assert "Delay execution for a given number of seconds." in result.chunks[0].text


def test_it_only_returns_chunks_of_the_knowledge_base_searched(evalset):
    other = knowledge_base_create(name="Clockmaker")
    source_ingest(
        source=source_add_faq(
            knowledge_base=other,
            question="How do I pause my program for half a second?",
            answer="Our clocks delay execution for a given number of seconds when you press the pause button.",
        )
    )

    in_evalset = chunk_search(knowledge_base_id=evalset.id, query="pause my program for half a second", k=20)
    in_other = chunk_search(knowledge_base_id=other.id, query="pause my program for half a second", k=20)

    other_chunks = set(Chunk.objects.filter(knowledge_base=other).values_list("id", flat=True))
    assert other_chunks and not other_chunks & {chunk.chunk_id for chunk in in_evalset.chunks}
    assert {chunk.chunk_id for chunk in in_other.chunks} == other_chunks
    assert in_other.chunks[0].title == "How do I pause my program for half a second?"


def test_it_says_nothing_is_relevant_for_an_unrelated_question(evalset):
    result = chunk_search(knowledge_base_id=evalset.id, query="Which wine goes best with grilled salmon?", k=5)

    assert result.chunks
    assert not result.relevant
    assert result.relevant_chunks == []


def test_it_returns_identical_passages_only_once(evalset):
    # pydoc repeats inherited methods under every subclass: Queue, LifoQueue and PriorityQueue share task_done.
    result = chunk_search(knowledge_base_id=evalset.id, query="tell the queue a job I took out is finished", k=10)

    texts = [" ".join(chunk.text.split()) for chunk in result.chunks]
    assert len(texts) == len(set(texts)) == 10


def test_term_statistics_follow_ingestion_and_deletion(evalset):
    assert term_counts(evalset.id) == term_counts_recomputed(evalset.id)
    assert term_counts(evalset.id)[""] == Chunk.objects.filter(knowledge_base=evalset).count()

    knowledge_base = knowledge_base_create(name="Acme")
    guide = source_add_file(
        knowledge_base=knowledge_base,
        filename="guide.md",
        data=b"# Guide\n\n## Returns\n\nReturn parcels within 30 days.",
    )
    source_ingest(source=guide)
    faq = source_add_faq(
        knowledge_base=knowledge_base, question="Do you ship abroad?", answer="We ship parcels abroad."
    )
    source_ingest(source=faq)
    assert term_counts(knowledge_base.id)["parcel"] == 2
    assert term_counts(knowledge_base.id) == term_counts_recomputed(knowledge_base.id)

    source_delete(source=guide)
    assert term_counts(knowledge_base.id)["parcel"] == 1
    assert term_counts(knowledge_base.id) == term_counts_recomputed(knowledge_base.id)
    # Deleting the knowledge base cascades to chunks and terms without the triggers re-creating rows.
    source_delete(source=faq)
    knowledge_base.delete()
    assert not Term.objects.filter(knowledge_base_id=knowledge_base.id).exists()


def test_a_chunk_keeps_its_embedding_and_its_token_signature_in_its_row(evalset):
    """Every similarity computed on a row reads its embedding, and the second stage reads its signature: out of the
    row (PostgreSQL's default for rows over 2 KB, which most chunks are) each read went through the TOAST index, and
    the search cost PostgreSQL about twice the CPU (knowledge migration 0008)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(pg_column_toast_chunk_id(embedding)),"
            " count(pg_column_toast_chunk_id(token_signature)) FROM knowledge_chunk WHERE knowledge_base_id = %s",
            [evalset.id],
        )
        chunks, embeddings_outside, signatures_outside = cursor.fetchone()
    assert chunks > 1000
    assert embeddings_outside == 0
    assert signatures_outside < chunks * 0.05  # the longest chunks' rows give it up


def test_the_text_half_ranks_rare_words_above_common_ones(evalset):
    result = chunk_search(knowledge_base_id=evalset.id, query="return the sha256 of a file object", k=5, mode="text")

    # "return", "file" and "object" are everywhere; "sha256" decides.
    assert "sha256" in result.chunks[0].text.lower()


def test_a_new_knowledge_bases_lexemes_are_looked_up_by_the_term_index_before_the_statistics_know_it(evalset):
    """The text half's first statement reads the question's lexemes' document frequencies. Until autovacuum next
    analyses the term table (for a new knowledge base in a large table: once a tenth of the table has changed), the
    planner thinks a new knowledge base has no terms. It then read all of them through an index on the knowledge
    base alone and filtered them; now there is only the index that looks up knowledge base and lexeme together."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_term")  # the statistics know the evaluation set's terms, and no others
    knowledge_base = knowledge_base_create(name="Catalogue")
    words = " ".join(f"part{number:04d}x" for number in range(1500))
    source_ingest(
        source=source_add_file(knowledge_base=knowledge_base, filename="parts.md", data=f"# Parts\n\n{words}".encode())
    )

    with CaptureQueriesContext(connection) as queries:
        found = chunk_search(knowledge_base_id=knowledge_base.id, query="Is part0042x in stock?", mode="text")
    lookup = next(q["sql"] for q in queries if "FROM knowledge_term" in q["sql"] and "tsvector_to_array" in q["sql"])
    plan = _plan(lookup)

    assert found.chunks
    assert re.search(r"Index Scan using term_unique_lexeme .*\n.*lexeme = ANY", plan), plan
    assert "Filter" not in plan, plan


def _clustered_vectors(rng, n: int, centroids: np.ndarray) -> np.ndarray:
    noise = rng.standard_normal((n, EMBEDDING_DIMENSIONS)) * (0.6 / EMBEDDING_DIMENSIONS**0.5)
    vectors = centroids[rng.integers(0, len(centroids), n)] + noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _add_chunks(knowledge_base: KnowledgeBase, vectors: np.ndarray, *, start: int = 0) -> None:
    source = Source.objects.create(knowledge_base=knowledge_base, kind=Source.Kind.FILE, title="synthetic")
    document = Document.objects.create(source=source, knowledge_base=knowledge_base, key=f"s{start}")
    Chunk.objects.bulk_create(
        [
            Chunk(
                document=document,
                knowledge_base=knowledge_base,
                position=start + i,
                text=f"synthetic passage {start + i}",
                token_count=3,
                text_hash=f"{start + i}",
                embedding=vector.tolist(),
            )
            for i, vector in enumerate(vectors)
        ],
        batch_size=1000,
    )


def test_hnsw_search_finds_what_exact_search_finds_with_many_knowledge_bases_and_late_rows():
    """All these rows arrive after the index was built (it exists since the migration); a few distinct rows go in
    first, the situation in which late rows were seen to be unreachable. 50 knowledge bases share the table, so
    the filter keeps 2% of what the index walks: without the iterative scan most results would be missing."""
    rng = np.random.default_rng(3)
    centroids = rng.standard_normal((300, EMBEDDING_DIMENSIONS))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    knowledge_bases = [KnowledgeBase.objects.create(name=f"kb{n}") for n in range(50)]
    _add_chunks(knowledge_bases[0], rng.standard_normal((5, EMBEDDING_DIMENSIONS)))
    for knowledge_base in knowledge_bases:
        _add_chunks(knowledge_base, _clustered_vectors(rng, 160, centroids), start=10)
    queries = _clustered_vectors(rng, 60, centroids)

    recalls = []
    for number, vector in enumerate(queries):
        knowledge_base = knowledge_bases[number % len(knowledge_bases)]
        found = {}
        for exact in (True, False):
            result = chunk_search(
                knowledge_base_id=knowledge_base.id,
                query=str(number),
                k=10,
                mode="vector",
                exact=exact,
                embedding=vector.tolist(),
            )
            found[exact] = {chunk.chunk_id for chunk in result.chunks}
        recalls.append(len(found[True] & found[False]) / len(found[True]))

    assert np.mean(recalls) >= 0.95, recalls


def _plan(sql: str, params=None) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_vector_half_uses_the_hnsw_index_and_the_text_half_the_gin_index(evalset):
    """On 1,773 rows the planner rightly prefers scanning the knowledge base's rows (through its foreign-key index)
    and sorting, so those plans are switched off here to show the queries can use the indexes;
    bench/results/retrieval_explain.txt has the plans the planner chooses by itself at 100k rows. For the text half
    that takes the foreign-key index away (until the test's transaction is rolled back): which bitmap the planner
    took depended on how many other knowledge bases' rows the module's earlier tests had left in the table."""
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            chunk_search(knowledge_base_id=evalset.id, query="pause my program for half a second", exact=False)
        # The planner's settings go first in the same round trip: the vector half is the last statement.
        vector_sql = next(q["sql"] for q in queries if "ORDER BY embedding <=>" in q["sql"]).split("; ")[-1]
        text_sql = next(q["sql"] for q in queries if "AS scored" in q["sql"])

        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            assert "chunk_embedding_hnsw" in _plan(vector_sql)
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunk'"
                " AND indexdef LIKE '%%btree (knowledge_base_id)'"
            )
            cursor.execute(f'DROP INDEX "{cursor.fetchone()[0]}"')
            assert "chunk_search_vector_gin" in _plan(text_sql)


@pytest.mark.parametrize("through_hnsw", [True, False], ids=["hnsw", "exact"])
def test_a_search_inside_a_callers_transaction_leaves_the_planner_as_it_found_it(evalset, monkeypatch, through_hnsw):
    """The HNSW search switches sequential and bitmap scans off until its transaction ends, the exact search index
    scans; inside a caller's transaction they are put back, or the caller's next queries would be planned without
    them."""
    if through_hnsw:
        monkeypatch.setattr(retrieval, "EXACT_SEARCH_ALWAYS_CHUNKS", 0)  # the evaluation set through HNSW
        monkeypatch.setattr(retrieval, "HNSW_MIN_SHARE", 0.0)
    with transaction.atomic():
        chunk_search(knowledge_base_id=evalset.id, query="pause my program for half a second")
        retrieval.vector_neighbours(knowledge_base_id=evalset.id, embeddings=[[1.0] + [0.0] * 383])
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('enable_seqscan'), current_setting('enable_bitmapscan'),"
                " current_setting('enable_indexscan')"
            )
            assert cursor.fetchone() == ("on", "on", "on")


@pytest.mark.parametrize("through_hnsw", [True, False], ids=["hnsw", "exact"])
def test_a_vector_compared_with_the_neighbours_of_one_close_to_it_finds_its_own_nearest_chunk(
    evalset, monkeypatch, through_hnsw
):
    """conversation_search decides whether a question leans on the earlier turns from its nearest chunk, which it
    reads among the neighbours of the question mixed with those turns (`compared`) instead of walking the graph
    for it: the same chunk at the same distance, and the neighbours as without it."""
    if through_hnsw:
        monkeypatch.setattr(retrieval, "EXACT_SEARCH_ALWAYS_CHUNKS", 0)
        monkeypatch.setattr(retrieval, "HNSW_MIN_SHARE", 0.0)
    questions = [question.question for question in questions_load(EVAL_DIR / "questions.jsonl")[:12]]
    vectors = [np.asarray(e.vector) for e in get_embedder(None).embed_queries(questions)]
    for question, earlier in zip(vectors, vectors[1:] + vectors[:1], strict=True):
        mixed = question + 0.3 * earlier  # an unrelated earlier question: the mix's neighbours move the most
        mixed = (mixed / np.linalg.norm(mixed)).tolist()

        compared = retrieval.vector_neighbours(
            knowledge_base_id=evalset.id, embeddings=[mixed], compared=question.tolist()
        )
        [alone] = retrieval.vector_neighbours(knowledge_base_id=evalset.id, embeddings=[question.tolist()]).hits

        assert compared.compared_nearest[0] == alone[0][0]
        assert compared.compared_nearest[1] == pytest.approx(alone[0][1], abs=1e-6)
        assert compared.hits == retrieval.vector_neighbours(knowledge_base_id=evalset.id, embeddings=[mixed]).hits


@pytest.mark.parametrize("through_hnsw", [True, False], ids=["hnsw", "exact"])
def test_once_the_question_is_embedded_a_first_question_needs_one_statement(evalset, monkeypatch, through_hnsw):
    """The vector half and the description of every candidate (its text, its document, its similarity) go in one
    statement after the embedding, with the planner's settings for the vector half in the same round trip: each
    round trip there is one before the first token. The passages are those of the search done in steps."""
    if through_hnsw:
        monkeypatch.setattr(retrieval, "EXACT_SEARCH_ALWAYS_CHUNKS", 0)
        monkeypatch.setattr(retrieval, "HNSW_MIN_SHARE", 0.0)
    question = "pause my program for half a second"
    embedded = get_embedder(None).embed_queries([question])[0]
    embedding_soon = EmbeddingDoneWhenAskedFor(embedded)
    after_the_embedding: list[str] = []

    def statements_after_the_wait(execute, sql, params, many, context):
        # The test's own transaction makes the search's a savepoint, and has the planner put back at its end.
        if embedding_soon.asked and not sql.startswith(
            ("RELEASE", "SET LOCAL enable_indexscan = on", "SELECT set_config('enable_seqscan', 'on'")
        ):
            after_the_embedding.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(statements_after_the_wait):
        result = chunk_search(knowledge_base_id=evalset.id, query=question, k=5, embedding_soon=embedding_soon)
    in_steps = chunk_search(
        knowledge_base_id=evalset.id,
        query=question,
        k=5,
        embedding=embedded.vector,
        query_tokens=embedded.tokens,
        vector_hits=retrieval.vector_neighbours(knowledge_base_id=evalset.id, embeddings=[embedded.vector]).hits[0],
    )

    assert len(after_the_embedding) == 1 and "<=>" in after_the_embedding[0]
    assert [(c.chunk_id, c.text, c.heading_path, c.title, c.vector_rank, c.text_rank) for c in result.chunks] == [
        (c.chunk_id, c.text, c.heading_path, c.title, c.vector_rank, c.text_rank) for c in in_steps.chunks
    ]
    assert [c.score for c in result.chunks] == pytest.approx([c.score for c in in_steps.chunks])
    assert "Delay execution for a given number of seconds." in result.chunks[0].text


def test_hybrid_retrieval_on_the_evaluation_set(evalset):
    questions = questions_load(EVAL_DIR / "questions.jsonl")

    hybrid = retrieval_evaluate(knowledge_base_id=evalset.id, questions=questions, k=5, mode="hybrid")
    vector = retrieval_evaluate(knowledge_base_id=evalset.id, questions=questions, k=5, mode="vector")
    text = retrieval_evaluate(knowledge_base_id=evalset.id, questions=questions, k=5, mode="text")
    # Chunks indexed before token signatures existed: hybrid search without its second stage (rolled back).
    Chunk.objects.filter(knowledge_base=evalset).update(token_signature=None)
    first_stage = retrieval_evaluate(knowledge_base_id=evalset.id, questions=questions, k=5, mode="hybrid")

    # Measured 0.835 (without the late-interaction stage 0.794, vector 0.722, text 0.536). The goal is
    # 0.90, which this does not reach yet: see docs/retrieval.md. The floors keep the gains of the BM25 half, the
    # fusion and the second stage from silently regressing.
    assert hybrid.recall_at_k >= 0.82, hybrid.misses
    assert hybrid.recall_at_k > first_stage.recall_at_k >= 0.78
    assert first_stage.recall_at_k > vector.recall_at_k + 0.05
    assert text.recall_at_k >= 0.5


def test_follow_ups_keep_the_thread_on_the_conversation_set(evalset):
    conversations = conversations_load(EVAL_DIR / "conversations.jsonl")

    def last_turn_alone(*, knowledge_base_id, question, history, previous_chunk_ids, k, mode):
        return chunk_search(knowledge_base_id=knowledge_base_id, query=question, k=k, mode=mode)

    with_context = conversations_evaluate(knowledge_base_id=evalset.id, conversations=conversations, k=5)
    alone = conversations_evaluate(
        knowledge_base_id=evalset.id, conversations=conversations, k=5, retriever=last_turn_alone
    )

    # Measured 0.621 with the conversation's context, 0.345 for the last turn alone, 0.707 for the first turns
    # (docs/retrieval.md). The goal (within 0.05 of the first turns) is not met yet.
    assert with_context.recall_at_k >= 0.58, with_context.misses
    assert with_context.recall_at_k > alone.recall_at_k + 0.2
    assert with_context.first_question.recall_at_k == alone.first_question.recall_at_k >= 0.68


def test_a_knowledge_base_that_is_most_of_the_table_is_searched_through_hnsw_and_small_shares_exactly():
    """Exact search costs the database CPU in proportion to the knowledge base's size; HNSW is cheap but loses
    recall when the filter keeps a small share of what it walks. So: HNSW for a large share, exact otherwise."""
    rng = np.random.default_rng(5)
    centroids = rng.standard_normal((50, EMBEDDING_DIMENSIONS))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    big, small_share, tiny = (KnowledgeBase.objects.create(name=name) for name in ("big", "small share", "tiny"))
    _add_chunks(big, _clustered_vectors(rng, 9_000, centroids))
    _add_chunks(small_share, _clustered_vectors(rng, 2_100, centroids), start=10_000)
    _add_chunks(tiny, _clustered_vectors(rng, 20, centroids), start=20_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    query = _clustered_vectors(rng, 1, centroids)[0].tolist()

    def searched_exactly(knowledge_base: KnowledgeBase) -> bool:
        with CaptureQueriesContext(connection) as queries:
            result = chunk_search(knowledge_base_id=knowledge_base.id, query="q", mode="vector", embedding=query)
        assert len(result.chunks) == 5
        return any("enable_indexscan = off" in q["sql"] for q in queries)

    assert not searched_exactly(big)
    assert searched_exactly(small_share)
    assert searched_exactly(tiny)


def test_a_very_large_knowledge_base_walks_further_through_the_hnsw_graph(monkeypatch):
    """At 500,000 chunks recall@10 fell to 0.91 at ef_search 200 (bench/retrieval_scale.py); past
    HNSW_LARGE_KB_CHUNKS the walk goes to HNSW_EF_SEARCH_LARGE. The threshold is lowered here to keep the test small."""
    rng = np.random.default_rng(8)
    centroids = rng.standard_normal((20, EMBEDDING_DIMENSIONS))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    large, ordinary = (KnowledgeBase.objects.create(name=name) for name in ("large", "ordinary"))
    _add_chunks(large, _clustered_vectors(rng, 3_000, centroids))
    _add_chunks(ordinary, _clustered_vectors(rng, 2_500, centroids), start=10_000)
    monkeypatch.setattr(retrieval, "HNSW_LARGE_KB_CHUNKS", 2_800)
    query = _clustered_vectors(rng, 1, centroids)[0].tolist()

    def ef_search_used(knowledge_base: KnowledgeBase) -> int:
        with CaptureQueriesContext(connection) as queries:
            chunk_search(knowledge_base_id=knowledge_base.id, query="q", mode="vector", embedding=query, exact=False)
        [setting] = [q["sql"] for q in queries if "hnsw.ef_search" in q["sql"]]
        return int(re.search(r"'hnsw\.ef_search', '(\d+)'", setting).group(1))

    assert ef_search_used(large) == retrieval.HNSW_EF_SEARCH_LARGE
    assert ef_search_used(ordinary) == retrieval.HNSW_EF_SEARCH
