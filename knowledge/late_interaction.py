"""Second-stage scoring by late interaction: each word piece of the question meets its best match in a passage.

A chunk's vector is the mean of its ~200 word pieces' contextual embeddings, so three lines about one method in a
long class section are drowned by everything around them. Late interaction (ColBERT's MaxSim) keeps the pieces:
for every word piece of the question, the most similar word piece of the passage, averaged over the question. It
reorders the candidates that the vector and text halves found; it never finds new ones.

The same forward pass that embeds a chunk yields its token embeddings, so ingestion costs no extra model time. They
are stored compactly as a chunk's *token signature*: one row per distinct word piece (its occurrences' embeddings
averaged), one bit per dimension (the sign), `dimensions / 8` bytes a row: about 3.5 KB for a 200-token chunk.
The question's side stays in full precision. Measured on tests/fixtures/eval: full-precision rows, one row per
token, and the compact signature rank the same (docs/retrieval.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def token_signature(*, token_ids: Sequence[int], token_embeddings: np.ndarray, skip_ids: Collection[int] = ()) -> bytes:
    """The packed sign bits of the mean embedding of each distinct word piece, special tokens (`skip_ids`)
    left out. `token_embeddings` has one row per entry of `token_ids`."""
    ids = np.asarray(token_ids)
    embeddings = np.asarray(token_embeddings, dtype=np.float32)
    keep = ~np.isin(ids, list(skip_ids)) if skip_ids else np.ones(len(ids), dtype=bool)
    ids, embeddings = ids[keep], embeddings[keep]
    if len(ids) == 0:
        return b""
    embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    unique, inverse = np.unique(ids, return_inverse=True)
    sums = np.zeros((len(unique), embeddings.shape[1]), dtype=np.float32)
    np.add.at(sums, inverse, embeddings)
    # The sign of a mean is the sign of the sum.
    return np.packbits(sums > 0, axis=1).tobytes()


def late_interaction_scores(*, query_tokens: np.ndarray, signatures: Sequence[bytes]) -> list[float]:
    """For each signature: the mean, over the question's token embeddings (unit rows), of the best cosine with
    one of the signature's rows (read as ±1/√dimensions). An empty signature scores 0."""
    query_tokens = np.asarray(query_tokens, dtype=np.float32)
    dimensions = query_tokens.shape[1]
    row_bytes = dimensions // 8
    counts = [len(signature) // row_bytes for signature in signatures]
    scores = [0.0] * len(signatures)
    if not any(counts) or len(query_tokens) == 0:
        return scores
    packed = np.frombuffer(b"".join(signatures), dtype=np.uint8).reshape(-1, row_bytes)
    signs = np.unpackbits(packed, axis=1).astype(np.float32) * 2 - 1
    similarities = query_tokens @ signs.T / np.sqrt(dimensions)
    starts = np.cumsum([0, *counts[:-1]])
    non_empty = [index for index, count in enumerate(counts) if count]
    best = np.maximum.reduceat(similarities, starts[non_empty], axis=1)
    for column, index in enumerate(non_empty):
        scores[index] = float(best[:, column].mean())
    return scores
