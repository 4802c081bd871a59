"""Train the shipped garment-type head on clothing-small/train and check it on validation.

    python scripts/train_garment_head.py            # writes indexer/heads/garment.npz
    python scripts/train_garment_head.py --sweep    # 5-fold CV on train over l2 first

Prints validation top-1 accuracy per class and overall, and the feature extractor's speed.
Hyperparameters are chosen by cross-validation on train only; validation is looked at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import load_settings  # noqa: E402
from indexer.tagger import train_head  # noqa: E402
from indexer.vision import MODEL_ID, ImageEncoder, encode_files  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "clothing-small"
# The dataset's class folders, in the default vocabulary's words.
CLASS_TO_KEYWORD = {
    "dress": "dress",
    "hat": "hat",
    "longsleeve": "long-sleeve top",
    "outwear": "jacket",
    "pants": "pants",
    "shirt": "shirt",
    "shoes": "shoes",
    "shorts": "shorts",
    "skirt": "skirt",
    "t-shirt": "T-shirt",
}


def features(split: str, encoder: ImageEncoder, cache: Path | None) -> tuple[np.ndarray, list[str]]:
    paths = sorted((DATASET / split).glob("*/*.jpg"))
    labels = [CLASS_TO_KEYWORD[p.parent.name] for p in paths]
    if cache is not None and cache.exists():
        return np.load(cache)["features"], labels
    started = time.monotonic()
    feats = encode_files(encoder, paths)
    seconds = time.monotonic() - started
    print(f"{split}: {len(paths)} images in {seconds:.1f}s = {len(paths) / seconds:.1f} images/s")
    if cache is not None:
        np.savez_compressed(cache, features=feats)
    return feats, labels


def sweep(x: np.ndarray, y: list[str], folds: int = 5) -> float:
    """The l2 with the best mean accuracy over `folds` random folds of the training split."""
    fold = np.random.default_rng(0).integers(0, folds, len(y))
    labels = np.array(y)
    best = (0.0, 0.0)
    for l2 in (3e-4, 1e-3, 3e-3, 1e-2):
        scores = []
        for k in range(folds):
            head = train_head("garment", x[fold != k], list(labels[fold != k]), MODEL_ID, l2=l2)
            scores.append(np.mean(np.array(head.predict(x[fold == k])) == labels[fold == k]))
        print(f"  l2={l2:g}: {folds}-fold CV accuracy {np.mean(scores):.4f}")
        best = max(best, (float(np.mean(scores)), l2))
    print(f"chose l2={best[1]:g}")
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "indexer" / "heads" / "garment.npz")
    parser.add_argument("--cache", type=Path, help="folder to keep extracted features in")
    parser.add_argument("--sweep", action="store_true", help="pick l2 by 5-fold CV on train")
    args = parser.parse_args()
    encoder = ImageEncoder(load_settings().models_dir)
    cache = args.cache
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    x_train, y_train = features("train", encoder, cache / "train.npz" if cache else None)
    x_val, y_val = features("validation", encoder, cache / "validation.npz" if cache else None)
    l2 = sweep(x_train, y_train) if args.sweep else None
    head = train_head("garment", x_train, y_train, MODEL_ID, **({"l2": l2} if l2 else {}))
    predicted = head.predict(x_val)
    right = Counter(t for p, t in zip(predicted, y_val, strict=True) if p == t)
    total = Counter(y_val)
    for keyword in sorted(total):
        print(f"  {keyword:16s} {right[keyword] / total[keyword]:.3f}  ({total[keyword]})")
    accuracy = sum(right.values()) / len(y_val)
    print(f"validation top-1 accuracy {accuracy:.4f} on {len(y_val)} images")
    head.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
