"""Late interaction: token signatures from the local model, and the second-stage score built on them."""

import numpy as np
import pytest
from tokenizers import Tokenizer

from knowledge.embeddings import EMBEDDING_DIMENSIONS, LocalEmbedder, get_embedder, local_model_path
from knowledge.late_interaction import late_interaction_scores, token_signature


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return get_embedder(None)  # type: ignore[return-value]


def test_a_signature_has_one_row_of_sign_bits_per_distinct_word_piece_without_special_tokens():
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((6, 16)).astype(np.float32)
    # [CLS] a b a c [SEP]: "a" twice, its row the sign of the two embeddings' mean.
    signature = token_signature(token_ids=[101, 7, 8, 7, 9, 102], token_embeddings=embeddings, skip_ids={101, 102})

    rows = np.unpackbits(np.frombuffer(signature, dtype=np.uint8).reshape(-1, 2), axis=1)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert rows.tolist() == [
        (unit[1] + unit[3] > 0).tolist(),
        (unit[2] > 0).tolist(),
        (unit[4] > 0).tolist(),
    ]
    assert token_signature(token_ids=[101, 102], token_embeddings=embeddings[:2], skip_ids={101, 102}) == b""


def test_the_score_is_each_question_token_s_best_match_averaged():
    dimensions = 8
    query = np.eye(dimensions, dtype=np.float32)[:2]  # two question tokens along the first two axes
    matches_both = np.packbits(np.array([[1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]], dtype=bool), axis=1)
    matches_none = np.packbits(np.zeros((3, dimensions), dtype=bool), axis=1)

    scores = late_interaction_scores(
        query_tokens=query, signatures=[matches_both.tobytes(), matches_none.tobytes(), b""]
    )

    assert scores == pytest.approx([1 / np.sqrt(dimensions), -1 / np.sqrt(dimensions), 0.0])


def test_the_local_model_gives_signatures_from_the_pass_that_gives_the_vectors(embedder):
    texts = ["queue › Classes › Queue\n\ntask_done(self)\n    Indicate that a formerly enqueued task is complete.", "a"]

    vectors, signatures = embedder.embed_documents_with_signatures(texts)

    assert np.allclose(vectors, embedder.embed_documents(texts), atol=1e-5)
    tokenizer = Tokenizer.from_file(str(local_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    distinct_word_pieces = [len(set(tokenizer.encode(text, add_special_tokens=False).ids)) for text in texts]
    assert [len(signature) * 8 // EMBEDDING_DIMENSIONS for signature in signatures] == distinct_word_pieces


def test_a_passage_about_the_question_scores_higher_than_its_neighbours(embedder):
    passages = [
        "queue › Classes › Queue\n\ntask_done(self)\n    Indicate that a formerly enqueued task is complete.",
        "queue › Classes › Queue\n\nqsize(self)\n    Return the approximate size of the queue (not reliable!).",
        "time › Functions › sleep\n\nsleep(seconds)\n    Delay execution for a given number of seconds.",
    ]
    _, signatures = embedder.embed_documents_with_signatures(passages)
    query_tokens = embedder.embed_query_tokens("tell the queue a task I took out is complete")

    assert query_tokens.shape[1] == EMBEDDING_DIMENSIONS
    assert np.allclose(np.linalg.norm(query_tokens, axis=1), 1.0, atol=1e-5)
    scores = late_interaction_scores(query_tokens=query_tokens, signatures=signatures)
    assert scores[0] > scores[1] > scores[2]
