"""The local models' PyTorch side, needed only with the `local` extra: the packaged
networks, the garment tail (built, saved and loaded for training and export), and the
one-time export of both models to ONNX (indexer/model_files.py keys and stores it)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ConfigError
from indexer.files import atomic_write
from indexer.model_files import IMAGE_MODEL, INPUT_SIZE, image_weights, text_model_dir


def export_text(target: Path) -> None:
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()  # a bar of its own would break the CLI's one-line notes
    base = AutoModel.from_pretrained(str(text_model_dir())).eval()

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
    model.load_state_dict(torch.load(image_weights(), map_location="cpu"))
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


def export_image(target: Path, tail_path: Path | None) -> None:
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
