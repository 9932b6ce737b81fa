"""The vector half's SQL: the planner's settings for a search of the nearest chunks (exactly, or through the HNSW
index), the statements that walk it, and the question's vector as those statements send it. knowledge.retrieval
decides which search a knowledge base gets and what it asks for."""

import functools


def vector_literal(embedding: list[float]) -> str:
    """The vector as pgvector reads it in text, each number to 7 significant digits."""
    return _literal_format(len(embedding)) % tuple(embedding)


@functools.cache
def _literal_format(dimensions: int) -> str:
    # One %-format of every number: 49 µs for 384 against 80 through a generator of f-strings, the same text.
    return "[" + ",".join(["%.7g"] * dimensions) + "]"


def vector_search_prepare(cursor, *, exact: bool, ef_search: int, limit: int) -> None:
    """Set the planner for the vector half until the transaction ends (SET LOCAL), until `vector_search_finish`."""
    if exact:
        cursor.execute(EXACT_PREPARE)
    else:
        cursor.execute(HNSW_PREPARE, [str(max(ef_search, limit))])


def vector_search_prepared(cursor, *, exact: bool, ef_search: int, limit: int, sql: str, params: list) -> None:
    """`vector_search_prepare` and the statement `sql` in one round trip (one string of two statements, which
    psycopg sends through the simple query protocol); the cursor is left on the statement's rows."""
    if exact:
        cursor.execute(f"{EXACT_PREPARE}; {sql}", params)
    else:
        cursor.execute(f"{HNSW_PREPARE}; {sql}", [str(max(ef_search, limit)), *params])
    cursor.nextset()


# Without index scans the planner reads this knowledge base's rows through the knowledge_base_id index and keeps the
# nearest in a top-N sort: exact, and no copy of the vectors into a materialised subquery.
EXACT_PREPARE = "SET LOCAL enable_indexscan = off"
# pgvector's cost estimate grows with ef_search: at 200 the planner chose a scan of all 10,000 rows and a sort (19 ms)
# over the index (2.3 ms). This path was chosen because the index suits the knowledge base. All four in one round
# trip. What follows in the search's transaction reads rows by id, which they do not change, or puts them back first
# (before `vector_search_in_documents`); a search inside a caller's transaction puts them back at its end. A search
# in a transaction of its own, an answer's, saves that round trip.
HNSW_PREPARE = (
    "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)"
)


def vector_search_finish(cursor, *, exact: bool) -> None:
    """Undo `vector_search_prepare` for the rest of the transaction."""
    if exact:
        cursor.execute("SET LOCAL enable_indexscan = on")
    else:
        planner_settings_restore(cursor)


# The knowledge base's nearest chunks to the question, through HNSW or exactly as `vector_search_prepare` set the
# planner (the index walk may return them slightly out of order: `relaxed_order`). The question's vector is sent
# once, and the index takes it from the subquery as it would a constant.
NEAREST = (
    "WITH question AS (SELECT %s::vector AS vector),"
    " nearest AS (SELECT id FROM knowledge_chunk WHERE knowledge_base_id = %s"
    "  ORDER BY embedding <=> (SELECT vector FROM question) LIMIT %s)"
)


def nearest_chunks(cursor, *, knowledge_base_id: int, vector: str, limit: int) -> list[tuple[int, float]]:
    """(chunk id, cosine distance) of the knowledge base's `limit` nearest chunks to `vector`, nearest first."""
    return nearest_each(cursor, knowledge_base_id=knowledge_base_id, vectors=[vector], limit=limit)[0]


def nearest_each(cursor, *, knowledge_base_id: int, vectors: list[str], limit: int) -> list[list[tuple[int, float]]]:
    """`nearest_chunks` of each of `vectors`, in one statement: a branch per vector, each through the index as a
    search of its own (the planner set by `vector_search_prepare`)."""
    if not vectors:
        return []
    cursor.execute(nearest_each_sql(len(vectors)), [*vectors, *[knowledge_base_id, limit] * len(vectors)])
    return hits_by_branch(cursor.fetchall(), len(vectors))


def nearest_each_prepared(
    cursor,
    *,
    knowledge_base_id: int,
    vectors: list[str],
    limit: int,
    exact: bool,
    ef_search: int,
    compared: str | None = None,
) -> list[tuple]:
    """The rows of `nearest_each_sql` for `vectors` (and `compared`), with the planner's settings for them in the
    same round trip (`vector_search_prepared`)."""
    vector_search_prepared(
        cursor,
        exact=exact,
        ef_search=ef_search,
        limit=limit,
        sql=nearest_each_sql(len(vectors), compared=compared is not None),
        params=[*vectors, *([] if compared is None else [compared]), *[knowledge_base_id, limit] * len(vectors)],
    )
    return cursor.fetchall()


def hits_by_branch(rows, count: int) -> list[list[tuple[int, float]]]:
    """The rows of `nearest_each_sql(count)` as each branch's (chunk id, distance), nearest first."""
    hits: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    for row in rows:
        hits[row[0]].append((row[1], float(row[2])))
    return [sorted(found, key=nearest_first) for found in hits]


def nearest_first(hit: tuple[int, float]) -> tuple[float, int]:
    return hit[1], hit[0]


@functools.cache
def nearest_each_sql(count: int, *, compared: bool = False) -> str:
    """The statement of `nearest_each` for `count` vectors: only placeholders vary. Each row: the branch, the
    chunk's id, its distance to the branch's vector and, with `compared`, to that vector (its placeholder follows
    the branches' vectors)."""
    questions = ", ".join(
        [f"question_{n} AS (SELECT %s::vector AS vector)" for n in range(count)]
        + (["compared AS (SELECT %s::vector AS vector)"] if compared else [])
    )
    to_compared = ", embedding <=> (SELECT vector FROM compared)" if compared else ""
    branches = " UNION ALL ".join(
        f"(SELECT {n}, id, embedding <=> (SELECT vector FROM question_{n}){to_compared} FROM knowledge_chunk"  # noqa: S608
        f" WHERE knowledge_base_id = %s ORDER BY embedding <=> (SELECT vector FROM question_{n}) LIMIT %s)"
        for n in range(count)
    )
    return f"WITH {questions} {branches}"


def planner_settings_restore(cursor) -> None:
    """Undo what the HNSW search switched off for the planner (`vector_search_prepare`), for the rest of the
    transaction."""
    cursor.execute("SELECT set_config('enable_seqscan', 'on', true), set_config('enable_bitmapscan', 'on', true)")


def vector_search_in_documents(
    cursor, *, knowledge_base_id: int, document_ids: list[int], vector: str, limit: int
) -> list[tuple[int, float]]:
    # A few documents' rows, found through the document foreign key and sorted exactly (the caller has put back
    # the settings of an HNSW search in the same transaction: with them the planner would walk the graph instead).
    cursor.execute(
        "SELECT id, embedding <=> %s::vector AS distance FROM knowledge_chunk"
        " WHERE knowledge_base_id = %s AND document_id = ANY(%s) ORDER BY distance LIMIT %s",
        [vector, knowledge_base_id, document_ids, limit],
    )
    return [(row[0], float(row[1])) for row in cursor.fetchall()]
