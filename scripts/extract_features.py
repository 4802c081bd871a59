"""Extract EfficientNet-Lite2 features of the shared clothing set into an .npz cache.

    python scripts/extract_features.py --split train --out /tmp/features-train.npz

Used by the head-training and evaluation scripts; prints images/s of the extractor.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import load_settings  # noqa: E402
from indexer.vision import ImageEncoder, encode_files  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "clothing-small"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    paths = sorted((DATASET / args.split).glob("*/*.jpg"))
    labels = [p.parent.name for p in paths]
    started = time.monotonic()
    features = encode_files(ImageEncoder(load_settings().models_dir), paths, batch=args.batch)
    seconds = time.monotonic() - started
    np.savez_compressed(
        args.out,
        features=features,
        labels=np.array(labels),
        paths=np.array([str(p) for p in paths]),
    )
    print(f"{len(paths)} images in {seconds:.1f}s = {len(paths) / seconds:.1f} images/s")


if __name__ == "__main__":
    main()
