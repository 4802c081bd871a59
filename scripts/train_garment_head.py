"""Train the shipped garment head on every garment type the data can teach, and report it on
photos it was not tuned on.

    python scripts/train_garment_head.py [--cache DIR]      # writes indexer/heads/garment.npz

Data: clothing-small/train, plus a stratified half of clothing-extra (seed 0). The other half
of clothing-extra and clothing-small/validation are held out from training and from every
choice below, and looked at once, at the end.

Choices, by 5-fold cross-validation on the training photos only: the L2 weight; class
weights (inverse frequency to a power: 0 keeps the catalog's priors, 1 makes each type count
alike, which with four blouses pulls T-shirts into rare types); and one offset added to the
seven new types' biases (a calibrated threshold: below 0, a new type must be surer to win).
The rule, since no recipe reaches the issue's targets on these features: the most accurate
on the new types (class-balanced) among the recipes within one point of the best
class-balanced accuracy on the ten familiar types, so the new types cost the common ones at
most a point. (Flip augmentation and flip test-time averaging were tried before and gained
less than half a point, at a second forward pass per photo.)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import load_settings  # noqa: E402
from indexer.images import open_image, read_source  # noqa: E402
from indexer.tagger import LinearHead, train_head  # noqa: E402
from indexer.vision import INPUT_SIZE, MODEL_ID, ImageEncoder  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
# Dataset labels in the default vocabulary's words.
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
    "hoodie": "hoodie",
    "polo": "polo",
    "blazer": "blazer",
    "undershirt": "tank top",
    "body": "bodysuit",
    "top": "top",
    "blouse": "blouse",
}
FAMILIAR = {CLASS_TO_KEYWORD[c] for c in list(CLASS_TO_KEYWORD)[:10]}


def splits() -> dict[str, list[tuple[Path, str]]]:
    """train (small/train + half of extra), validation (small), holdout (other half of extra)."""
    small = lambda split: [  # noqa: E731
        (p, CLASS_TO_KEYWORD[p.parent.name])
        for p in sorted((DATA / "clothing-small" / split).glob("*/*.jpg"))
    ]
    by_label: dict[str, list[Path]] = defaultdict(list)
    with (DATA / "clothing-extra" / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            by_label[row["label"]].append(DATA / "clothing-extra" / row["file"])
    rng = np.random.default_rng(0)
    extra_train, holdout = [], []
    for label, paths in sorted(by_label.items()):
        order = rng.permutation(len(paths))
        half = len(paths) // 2
        extra_train += [(paths[i], CLASS_TO_KEYWORD[label]) for i in order[:half]]
        holdout += [(paths[i], CLASS_TO_KEYWORD[label]) for i in order[half:]]
    return {
        "train": small("train") + extra_train,
        "validation": small("validation"),
        "holdout": holdout,
    }


def features(
    name: str, items: list[tuple[Path, str]], encoder: ImageEncoder, cache: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """Features of each photo, (n, views, 1280): the first view is the photo as indexed."""
    file = cache / f"{name}.npz" if cache else None
    if file is not None and file.exists():
        return np.load(file)["features"], np.array([y for _, y in items])
    started = time.monotonic()
    out = []
    for start in range(0, len(items), 32):
        images = [
            open_image(read_source(p).data, 2 * INPUT_SIZE) for p, _ in items[start : start + 32]
        ]
        out.append(encoder.encode(images)[:, None])
    feats = np.concatenate(out)
    seconds = time.monotonic() - started
    print(f"{name}: {len(items)} photos in {seconds:.0f}s")
    if file is not None:
        np.savez_compressed(file, features=feats)
    return feats, np.array([y for _, y in items])


def predict(head: LinearHead, x: np.ndarray) -> np.ndarray:
    return np.array(head.classes)[head.probabilities(x[:, 0]).argmax(axis=1)]


def balanced_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


def fit(x: np.ndarray, y: np.ndarray, l2: float, balance: float, offset: float) -> LinearHead:
    head = train_head("garment", x[:, 0], [str(v) for v in y], MODEL_ID, l2=l2, balance=balance)
    new = np.array([c not in FAMILIAR for c in head.classes])
    return dataclasses.replace(head, bias=(head.bias + offset * new).astype(np.float32))


OFFSETS = tuple(np.round(np.arange(-3.0, 2.01, 0.25), 2))


def choose(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The recipe the rule in the module's docstring picks, on 5-fold cross-validation."""
    fold = np.random.default_rng(1).integers(0, 5, len(y))
    familiar = np.isin(y, list(FAMILIAR))
    results = []
    for l2, balance in itertools.product((1e-3, 3e-3), (0.0, 0.25, 0.5, 0.75)):
        predicted = {offset: np.empty(len(y), dtype=object) for offset in OFFSETS}
        for k in range(5):
            head = fit(x[fold != k], y[fold != k], l2, balance, 0.0)
            new = np.array([c not in FAMILIAR for c in head.classes])
            logits = x[fold == k][:, 0] @ head.weights + head.bias
            for offset in OFFSETS:
                predicted[offset][fold == k] = np.array(head.classes)[
                    (logits + offset * new).argmax(axis=1)
                ]
        for offset in OFFSETS:
            p = predicted[offset]
            recipe = {"l2": l2, "balance": balance, "offset": float(offset)}
            old = balanced_accuracy(p[familiar], y[familiar])
            new_types = balanced_accuracy(p[~familiar], y[~familiar])
            results.append((old, new_types, recipe))
    best_old = max(r[0] for r in results)
    old, new_types, chosen = max(
        (r for r in results if r[0] >= best_old - 0.01), key=lambda r: r[1]
    )
    print(
        f"familiar types at best {best_old:.3f} (CV, class-balanced); chose {chosen}: "
        f"familiar {old:.3f}, new types {new_types:.3f}"
    )
    return chosen


def report(name: str, head: LinearHead, x: np.ndarray, y: np.ndarray) -> None:
    predicted = predict(head, x)
    right, total = Counter(y[predicted == y]), Counter(y)
    for keyword in sorted(total):
        print(f"    {keyword:16s} {right[keyword] / total[keyword]:.3f}  ({total[keyword]})")
    familiar = np.isin(y, list(FAMILIAR))
    line = (
        f"  {name}: top-1 {np.mean(predicted == y):.3f}, "
        f"class-balanced {balanced_accuracy(predicted, y):.3f}"
    )
    if (~familiar).any() and familiar.any():
        line += (
            f"; familiar ten {balanced_accuracy(predicted[familiar], y[familiar]):.3f}, "
            f"new types {balanced_accuracy(predicted[~familiar], y[~familiar]):.3f}"
        )
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "indexer" / "heads" / "garment.npz")
    parser.add_argument("--cache", type=Path, help="folder to keep extracted features in")
    args = parser.parse_args()
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    encoder = ImageEncoder(load_settings().models_dir)
    data = {name: features(name, items, encoder, args.cache) for name, items in splits().items()}
    x, y = data["train"]
    print(f"training photos: {len(y)}, per type: {dict(sorted(Counter(y).items()))}")
    recipe = choose(x, y)
    head = fit(x, y, recipe["l2"], recipe["balance"], recipe["offset"])
    print("held-out results (looked at once):")
    for name in ("validation", "holdout"):
        report(name, head, *data[name])
    head.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
