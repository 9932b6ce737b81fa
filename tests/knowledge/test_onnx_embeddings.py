"""The ONNX Runtime backend of the local model: exported offline, held to sentence-transformers on torch.

The module exports the packaged model once into a temporary folder, in a child process that cannot open a network
connection, exactly as the install step does (`python -m knowledge.onnx_export`).
"""

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from knowledge.embeddings import EMBEDDING_DIMENSIONS, LocalEmbedder, get_embedder
from knowledge.onnx_encoder import OnnxEncoder
from knowledge.onnx_export import ONNX_FILES, onnx_model_export, onnx_model_path

ROOT = Path(__file__).resolve().parents[2]
EVAL_DIR = ROOT / "tests" / "fixtures" / "eval"

# Every socket the child opens fails: the export must need nothing but the installed packages.
NO_NETWORK = """
import socket

def refuse(*args, **kwargs):
    raise OSError("network use during the ONNX export")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
"""


def run_offline(code: str) -> subprocess.CompletedProcess:
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT / "var" / "test")}  # no HF_HUB_OFFLINE given
    return subprocess.run(
        [sys.executable, "-c", NO_NETWORK + textwrap.dedent(code)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=280,
    )


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("onnx") / "minilm"
    exported = run_offline(f"from knowledge.onnx_export import main; main(['--dir', {str(directory)!r}])")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "Exported" in exported.stdout
    return directory


@pytest.fixture(scope="module")
def torch_embedder() -> LocalEmbedder:
    return LocalEmbedder(backend="torch")


@pytest.fixture(scope="module")
def onnx_embedder(onnx_dir) -> LocalEmbedder:
    return LocalEmbedder(backend="onnx", onnx_dir=onnx_dir)


@pytest.fixture(scope="module")
def int8_embedder(onnx_dir) -> LocalEmbedder:
    return LocalEmbedder(backend="onnx-int8", onnx_dir=onnx_dir)


def questions() -> list[str]:
    lines = (EVAL_DIR / "questions.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def passages() -> list[str]:
    corpus = sorted((EVAL_DIR / "corpus").glob("*.md"))[:4]
    texts = [path.read_text()[start : start + 1200] for path in corpus for start in range(0, 4800, 1200)]
    # The edges of tokenisation: nothing, whitespace around, accents and emoji, and a text past 256 tokens.
    return [*texts, "", "  padded with spaces  ", "Ünïcödé café naïve 東京 🙂", "word " * 400]


def row_cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_the_export_needs_no_network_and_a_second_run_changes_nothing(onnx_dir):
    files = {name: (onnx_dir / name).stat().st_mtime_ns for name in [*ONNX_FILES.values(), "export.json"]}

    again = onnx_model_export(directory=onnx_dir)

    assert not again.exported
    assert {name: (onnx_dir / name).stat().st_mtime_ns for name in files} == files
    assert (onnx_dir / ONNX_FILES["onnx-int8"]).stat().st_size < (onnx_dir / ONNX_FILES["onnx"]).stat().st_size / 3
    assert not [path.name for path in onnx_dir.parent.iterdir() if path.name.startswith(".")], "no staging left"


def test_the_float32_backend_gives_the_vectors_of_sentence_transformers(torch_embedder, onnx_embedder):
    texts = passages()

    reference = torch_embedder.embed_documents(texts)
    vectors = onnx_embedder.embed_documents(texts)

    assert np.array(vectors).shape == (len(texts), EMBEDDING_DIMENSIONS)
    assert row_cosines(vectors, reference).min() >= 0.9999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_float32_backend_gives_the_question_vectors_and_token_embeddings_of_torch(torch_embedder, onnx_embedder):
    asked = [*questions()[:12], "word " * 400]  # a question past 256 tokens is cut where torch cuts it

    reference = torch_embedder.embed_queries(asked)
    embedded = onnx_embedder.embed_queries(asked)

    assert row_cosines([e.vector for e in embedded], [r.vector for r in reference]).min() >= 0.9999
    for mine, theirs in zip(embedded, reference, strict=True):
        assert mine.tokens.shape == theirs.tokens.shape  # the same word pieces, special tokens left out
        assert row_cosines(mine.tokens, theirs.tokens).min() >= 0.9999
    assert reference[-1].tokens.shape[0] == 254  # 256 with [CLS] and [SEP]


def test_the_float32_backend_gives_the_token_signatures_of_torch(torch_embedder, onnx_embedder):
    texts = passages()

    reference_vectors, reference_signatures = torch_embedder.embed_documents_with_signatures(texts)
    vectors, signatures = onnx_embedder.embed_documents_with_signatures(texts)

    assert row_cosines(vectors, reference_vectors).min() >= 0.9999
    assert [len(signature) for signature in signatures] == [len(signature) for signature in reference_signatures]
    bits = np.unpackbits(np.frombuffer(b"".join(signatures), dtype=np.uint8))
    reference_bits = np.unpackbits(np.frombuffer(b"".join(reference_signatures), dtype=np.uint8))
    # A sign bit of a near-zero sum may flip with rounding; measured: none did.
    assert np.mean(bits == reference_bits) >= 0.999


def test_the_int8_backend_stays_close_to_torch(torch_embedder, int8_embedder):
    texts = [*questions()[:20], *passages()]

    cosines = row_cosines(int8_embedder.embed_documents(texts), torch_embedder.embed_documents(texts))
    question = "How do I pause my program for half a second?"
    tokens = int8_embedder.embed_queries([question])[0].tokens

    # Measured on the evaluation texts: 0.991 on average, 0.975 at worst (docs/scaling.md has its recall).
    assert cosines.mean() >= 0.985 and cosines.min() >= 0.96, (cosines.mean(), cosines.min())
    assert tokens.shape == torch_embedder.embed_queries([question])[0].tokens.shape


def test_questions_go_through_the_batcher_on_the_onnx_backend(onnx_embedder, torch_embedder):
    vector = onnx_embedder.embed_query("When do I get my money back?")
    tokens = onnx_embedder.embed_query_tokens("When do I get my money back?")

    assert row_cosines([vector], [torch_embedder.embed_query("When do I get my money back?")])[0] >= 0.9999
    assert tokens.shape == torch_embedder.embed_query_tokens("When do I get my money back?").shape


def test_int8_questions_run_through_the_int8_graph_and_passages_stay_float32(onnx_dir, onnx_embedder, int8_embedder):
    embedder = LocalEmbedder(backend="onnx", query_precision="int8", onnx_dir=onnx_dir)
    question = "When do I get my money back?"
    texts = passages()[:6]

    asked = embedder.embed_queries([question])[0]
    float32_asked = onnx_embedder.embed_queries([question])[0]

    assert embedder.query_precision == "int8" and onnx_embedder.query_precision == "float32"
    assert asked.vector == int8_embedder.embed_queries([question])[0].vector
    assert asked.vector != float32_asked.vector
    # Measured on the evaluation questions: 0.995 on average, 0.990 at worst (docs/scaling.md).
    assert row_cosines([asked.vector], [float32_asked.vector])[0] >= 0.98
    assert asked.tokens.shape == float32_asked.tokens.shape
    assert embedder.embed_documents(texts) == onnx_embedder.embed_documents(texts), "stored vectors stay float32"
    assert embedder.embed_documents_with_signatures(texts) == onnx_embedder.embed_documents_with_signatures(texts)


def test_the_question_precision_setting(onnx_dir, tmp_path, settings, caplog):
    settings.EMBEDDING_BACKEND = "onnx"
    settings.EMBEDDING_QUERY_PRECISION = "int8"
    assert LocalEmbedder(onnx_dir=onnx_dir).query_precision == "int8"
    int8_questions = get_embedder(None)
    assert int8_questions.query_precision == "int8"

    settings.EMBEDDING_QUERY_PRECISION = "float32"
    assert LocalEmbedder(onnx_dir=onnx_dir).query_precision == "float32"
    assert get_embedder(None) is not int8_questions, "one embedder per backend and question precision"
    assert LocalEmbedder(backend="onnx-int8", onnx_dir=onnx_dir).query_precision == "int8"
    assert LocalEmbedder(backend="torch", query_precision="int8").query_precision == "float32"

    settings.EMBEDDING_QUERY_PRECISION = "int4"
    with pytest.raises(ImproperlyConfigured, match="EMBEDDING_QUERY_PRECISION"):
        LocalEmbedder(onnx_dir=onnx_dir)

    # An export without its int8 graph: questions run in float32, and the log says why.
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / ONNX_FILES["onnx"]).symlink_to(onnx_dir / ONNX_FILES["onnx"])
    with caplog.at_level(logging.WARNING, logger="knowledge.embeddings"):
        embedder = LocalEmbedder(backend="onnx", query_precision="int8", onnx_dir=partial)
    assert embedder.query_precision == "float32"
    assert len(caplog.records) == 1 and "model-int8.onnx is missing" in caplog.text


def test_questions_use_the_configured_threads_and_ingestion_every_core(onnx_dir, settings):
    settings.EMBEDDING_QUERY_THREADS = 1
    encoder = OnnxEncoder(model_path=onnx_model_path(backend="onnx", directory=onnx_dir), query_threads=1)

    assert encoder.session(queries=True).get_session_options().intra_op_num_threads == 1
    assert encoder.session(queries=False).get_session_options().intra_op_num_threads == 0  # one per core


def test_the_setting_selects_the_backend(onnx_dir, settings):
    settings.EMBEDDING_BACKEND = "onnx-int8"
    assert LocalEmbedder(onnx_dir=onnx_dir).backend == "onnx-int8"

    settings.EMBEDDING_BACKEND = "onnx"
    assert LocalEmbedder(onnx_dir=onnx_dir).backend == "onnx"

    settings.EMBEDDING_BACKEND = "torch"
    assert LocalEmbedder(onnx_dir=onnx_dir).backend == "torch"

    torch_embedder = get_embedder(None)
    settings.EMBEDDING_BACKEND = "onnx-int8"
    assert get_embedder(None) is get_embedder(None) is not torch_embedder, "one embedder per backend per process"

    settings.EMBEDDING_BACKEND = "tensorflow"
    with pytest.raises(ImproperlyConfigured, match="EMBEDDING_BACKEND"):
        LocalEmbedder(onnx_dir=onnx_dir)


def test_a_missing_export_falls_back_to_torch_with_one_log_line(tmp_path, caplog, torch_embedder, settings):
    settings.EMBEDDING_BACKEND = "onnx"

    with caplog.at_level(logging.WARNING, logger="knowledge.embeddings"):
        embedder = LocalEmbedder(onnx_dir=tmp_path / "never-exported")

    assert embedder.backend == "torch"
    assert len(caplog.records) == 1
    assert "python -m knowledge.onnx_export" in caplog.text and "never-exported" in caplog.text
    assert embedder.embed_documents(["Refunds are paid within 14 days."]) == torch_embedder.embed_documents(
        ["Refunds are paid within 14 days."]
    )


def test_the_onnx_backend_does_not_load_torch(onnx_dir):
    checked = run_offline(
        f"""
        import sys
        from pathlib import Path
        from knowledge.embeddings import LocalEmbedder

        embedder = LocalEmbedder(backend="onnx", onnx_dir=Path({str(onnx_dir)!r}))
        assert len(embedder.embed_query("How long does shipping take?")) == 384
        embedder.embed_documents_with_signatures(["Shipping takes three days."])
        print(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "sentence_transformers")))
        """
    )

    assert checked.returncode == 0, checked.stderr[-3000:]
    assert checked.stdout.strip() == "[]"
