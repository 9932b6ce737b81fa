"""all-MiniLM-L6-v2 run by ONNX Runtime: what `LocalEmbedder` needs from the model, without torch.

The same steps as sentence-transformers with the packaged model: the word-piece tokenizer of `tokenizer.json`, cut at
256 tokens and padded to the longest text of a batch; the transformer (the exported ONNX graph); the mean of the
token embeddings under the attention mask, scaled to unit length. `knowledge.onnx_export` makes the graph.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from knowledge.minilm import EMBEDDING_DIMENSIONS, EMBEDDING_MAX_TOKENS, EncodedText, local_model_path, unit_rows

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer


# The most padded tokens one forward pass takes (16 passages of 256 tokens; 64 questions of 64).
PASS_TOKENS = 4096


class OnnxEncoder:
    """Two sessions, made on first use: one for questions, on `query_model_path`'s graph (`model_path`'s unless
    given) and `query_threads` threads (a thread pool's size is fixed when its session is made), and one for
    ingestion on `model_path`'s graph and every core."""

    def __init__(self, *, model_path: Path, query_threads: int, query_model_path: Path | None = None) -> None:
        self.model_path = model_path
        self.query_model_path = query_model_path or model_path
        self._query_threads = query_threads
        self._tokenizer = _tokenizer()
        self.special_ids = _special_ids(self._tokenizer)
        self._sessions: dict[bool, onnxruntime.InferenceSession] = {}
        self._lock = threading.Lock()

    def vectors(self, texts: list[str], *, batch_size: int) -> np.ndarray:
        """Unit vectors of `texts`, in order; longest first, so that a pass pads its texts to similar lengths."""
        order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        vectors = np.zeros((len(texts), EMBEDDING_DIMENSIONS), dtype=np.float32)
        done = 0
        for _, mask, token_embeddings in self._passes([texts[i] for i in order], queries=False, most=batch_size):
            vectors[order[done : done + len(mask)]] = _mean_pool(token_embeddings, mask)
            done += len(mask)
        return vectors

    def encode(self, texts: list[str], *, queries: bool) -> list[EncodedText]:
        encoded = []
        for ids, mask, token_embeddings in self._passes(texts, queries=queries, most=len(texts)):
            pooled = _mean_pool(token_embeddings, mask)
            for row in range(len(ids)):
                keep = mask[row].astype(bool)
                encoded.append(EncodedText(ids[row][keep], token_embeddings[row][keep], pooled[row]))
        return encoded

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, *, queries: bool) -> np.ndarray:
        """The transformer alone: token embeddings for already tokenised, padded input."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session(queries=queries).run(["token_embeddings"], inputs)[0]

    def query_thread_setup(self) -> None:
        """Nothing to do on the questions' thread: their session has its own thread count."""

    def _passes(self, texts: list[str], *, queries: bool, most: int) -> Iterator[tuple[np.ndarray, ...]]:
        """Token ids, attention mask and token embeddings of `texts`, in order, a forward pass at a time: at most
        `most` texts and `PASS_TOKENS` padded tokens a pass (a pass of 64 passages of 256 tokens took the process to
        1.1 GB at its peak, for its attention scores; 16 of them to 0.4 GB, and no slower)."""
        if not texts:
            return
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        lengths = mask.sum(axis=1)
        start = 0
        while start < len(texts):
            end, width = start + 1, int(lengths[start])
            while end < len(texts) and end - start < most:
                wider = max(width, int(lengths[end]))
                if (end + 1 - start) * wider > PASS_TOKENS:
                    break
                end, width = end + 1, wider
            # Padding is on the right: the pass needs only its own longest text's width.
            pass_ids, pass_mask = ids[start:end, :width], mask[start:end, :width]
            yield pass_ids, pass_mask, self.forward(pass_ids, pass_mask, queries=queries)
            start = end

    def session(self, *, queries: bool) -> onnxruntime.InferenceSession:
        """The questions' session or the ingestion one, made on first use."""
        session = self._sessions.get(queries)
        if session is not None:
            return session
        with self._lock:
            if queries not in self._sessions:
                self._sessions[queries] = (
                    _session(self.query_model_path, threads=self._query_threads)
                    if queries
                    else _session(self.model_path, threads=0)
                )
            return self._sessions[queries]


def _session(model_path: Path, *, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: one per physical core
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # The arena would keep the peak of the largest batch for good: 64 passages of 256 tokens grew the process by
    # 900 MB. Without it that memory goes back after each batch.
    options.enable_cpu_mem_arena = False
    # ONNX Runtime's pool threads spin while they wait for work by default: CPU the other processes on the
    # machine (Daphne, PostgreSQL, the worker's streams) need more than an ingestion does.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _mean_pool(token_embeddings: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling (clamped count) then its Normalize module."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (token_embeddings * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    return unit_rows(summed / counts).astype(np.float32)


def _tokenizer() -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(local_model_path() / "tokenizer.json"))
    # The shipped tokenizer.json cuts at 128 and pads to 128; the model reads 256, padded to the batch's longest.
    tokenizer.enable_truncation(max_length=EMBEDDING_MAX_TOKENS)
    pad_token = _special_tokens()["pad_token"]
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad_token), pad_token=pad_token)
    return tokenizer


def _special_tokens() -> dict[str, str]:
    return json.loads((local_model_path() / "special_tokens_map.json").read_text())


def _special_ids(tokenizer: Tokenizer) -> frozenset[int]:
    """The ids sentence-transformers' tokenizer calls special ([CLS], [SEP], [PAD], [UNK], [MASK])."""
    return frozenset(tokenizer.token_to_id(token) for token in _special_tokens().values())
