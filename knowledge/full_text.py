"""The text half of hybrid retrieval (knowledge/retrieval.py): a BM25 ranking on PostgreSQL full-text search.

`ts_rank_cd` has no inverse document frequency, so common words drowned the ranking. The question's lexemes are looked
up in `knowledge_term` (document frequencies per knowledge base, kept by triggers), the GIN index finds the chunks
holding any informative lexeme, and they are ranked by BM25 with binary term frequency (presence of each lexeme,
IDF-weighted, length-normalised), which a tsvector answers cheaply with `@@`.
"""

import math

BM25_K1 = 1.2
BM25_B = 0.75
# Candidates of the text half are the chunks holding the rarest of the question's lexemes, taken rarest first
# while their document frequencies add up to at most this (at least one lexeme): the work stays bounded however
# large the knowledge base, and chunks holding only common words would score too little to matter. Every lexeme
# still counts in the score.
MATCH_BUDGET_CHUNKS = 1_000
# When even the rarest lexeme is common (a question of everyday words), BM25 has little to say and the vector half
# decides: score at most this many of the matching chunks rather than all of them.
MATCH_SCAN_LIMIT = 2_000
MAX_QUERY_LEXEMES = 32


def _tsquery_literal(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def text_search(
    cursor, *, knowledge_base_id: int, query: str, limit: int, search_config: str | None = None
) -> list[tuple[int, float]]:
    """(chunk id, BM25 score) of the best `limit` chunks for the question's lexemes, best first. `search_config`
    is the knowledge base's text-search configuration when the caller read it (`vector_search_plan`)."""
    # The question's lexemes in the knowledge base's own text-search configuration, the one its chunks use. Read
    # first and passed as a constant: with the configuration as a subquery inside the lookup, PostgreSQL ran
    # `to_tsvector` for every term of the knowledge base (text_search 2 -> 41 ms at 10,000 chunks, bench/run.py
    # --quick). It read them all through an index on the knowledge base alone, with statistics that did not know
    # the knowledge base yet; that index is gone (knowledge migration 0009), and the lookup takes the unique one.
    if search_config is None:
        cursor.execute("SELECT search_config::text FROM knowledge_knowledgebase WHERE id = %s", [knowledge_base_id])
        row = cursor.fetchone()
        if row is None:
            return []
        search_config = row[0]
    cursor.execute(
        "SELECT lexeme, chunks, lexemes FROM knowledge_term WHERE knowledge_base_id = %s"
        " AND lexeme = ANY(array_append(tsvector_to_array(to_tsvector(%s::regconfig, %s)), ''))",
        [knowledge_base_id, search_config, query[:2000]],
    )
    stats = {lexeme: (chunks, lexemes) for lexeme, chunks, lexemes in cursor.fetchall()}
    total_chunks, total_lexemes = stats.pop("", (0, 0))
    terms = sorted((chunks, lexeme) for lexeme, (chunks, _) in stats.items() if chunks > 0)[:MAX_QUERY_LEXEMES]
    if not terms or total_chunks <= 0:
        return []
    idf = [math.log(1 + (total_chunks - chunks + 0.5) / (chunks + 0.5)) for chunks, _ in terms]
    queries = [_tsquery_literal(lexeme) for _, lexeme in terms]
    selective, budget = [], MATCH_BUDGET_CHUNKS
    for (chunks, _), query in zip(terms, queries, strict=True):
        if selective and chunks > budget:
            break
        selective.append(query)
        budget -= chunks
    average_length = max(1.0, total_lexemes / total_chunks)
    # One `@@` per lexeme (a binary search in the tsvector); only the SQL's shape depends on the lexeme count.
    presence = " + ".join(["CASE WHEN search_vector @@ %s::tsquery THEN %s::float8 ELSE 0 END"] * len(queries))
    sql = (
        "SELECT id, score FROM ("  # noqa: S608 - only placeholders are interpolated
        f"  SELECT id, ({presence}) * %s / (1 + %s * (%s + %s * length(search_vector))) AS score FROM ("
        "    SELECT id, search_vector FROM knowledge_chunk"
        "    WHERE knowledge_base_id = %s AND search_vector @@ %s::tsquery LIMIT %s"
        "  ) AS matched"
        ") AS scored ORDER BY score DESC, id LIMIT %s"
    )
    cursor.execute(
        sql,
        [
            *[value for pair in zip(queries, idf, strict=True) for value in pair],
            BM25_K1 + 1,
            BM25_K1,
            1 - BM25_B,
            BM25_B / average_length,
            knowledge_base_id,
            " | ".join(selective),
            MATCH_SCAN_LIMIT,
            limit,
        ],
    )
    return [(row[0], float(row[1])) for row in cursor.fetchall()]
