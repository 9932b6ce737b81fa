"""Visitor questions as unit vectors, with the embedding model Parley already runs, cached in Redis: the quality
page and the topics job embed the same questions again and again."""

import numpy as np
from django.conf import settings
from django.core.cache import cache

from chatbot.realtime.keys import question_embedding_cache_key
from knowledge.embeddings import get_embedder

EMBEDDING_CACHE_S = 7 * 24 * 3600


def question_vectors(texts: list[str]) -> np.ndarray:
    """One unit vector per text (a row each, in order), computed only for texts not cached yet."""
    keys = {text: question_embedding_cache_key(text) for text in texts}
    cached = cache.get_many(list(set(keys.values())))
    missing = sorted({text for text in texts if keys[text] not in cached})
    if missing:
        vectors = get_embedder(settings.EMBEDDING_URL or None).embed_documents(missing)
        fresh = {keys[text]: vector for text, vector in zip(missing, vectors, strict=True)}
        cache.set_many(fresh, EMBEDDING_CACHE_S)
        cached.update(fresh)
    if not texts:
        return np.zeros((0, 0))
    return np.array([cached[keys[text]] for text in texts], dtype=np.float32)
