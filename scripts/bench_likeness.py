"""Near-duplicate photos found by pixels (indexer/likeness.py), measured on planted copies.

    python scripts/bench_likeness.py [--photos 300] [--per-kind 10] [--json]

Takes `--photos` distinct held-out photos of clothing-small/validation (spread over its
classes), plants `--per-kind` copies of other photos for each kind of change a catalog's
copies go through (re-encoded, resized, cropped a few percent a side, saved as PNG,
brightened or darkened, recoloured, stamped with a small logo), fingerprints everything and
reports, for thresholds around the one in use, the recall of planted pairs per kind and the
precision of the reported pairs (a pair of two distinct photos counts against it), with the
time to fingerprint 1,000 images and to compare them. With `--json` the last line is
{"photos", "planted", "threshold", "recall", "precision", "by_kind": {kind: recall},
"fingerprint_ms_per_1000", "compare_ms_per_1000"}.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer import likeness  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "clothing-small" / "validation"


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _png(img: Image.Image, _rng: random.Random) -> Image.Image:
    out = io.BytesIO()
    img.save(out, "PNG")
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _crop(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    cuts = [rng.uniform(0.0, 0.05) for _ in range(4)]  # up to 5% a side, each its own
    box = (
        round(w * cuts[0]),
        round(h * cuts[1]),
        w - round(w * cuts[2]),
        h - round(h * cuts[3]),
    )
    return img.crop(box)


def _logo(img: Image.Image, rng: random.Random) -> Image.Image:
    img = img.copy()
    w, h = img.size
    lw, lh = round(w * 0.12), round(h * 0.05)  # a corner mark, 0.6% of the picture
    x = rng.choice([8, w - lw - 8])
    y = rng.choice([8, h - lh - 8])
    draw = ImageDraw.Draw(img)
    draw.rectangle((x, y, x + lw, y + lh), fill=(20, 20, 20))
    draw.text((x + 3, y + 2), "SHOP", fill=(255, 255, 255))
    return img


KINDS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "re-encoded": lambda img, rng: _jpeg(img, rng.randint(30, 60)),
    "resized": lambda img, rng: img.resize(
        (round(img.width * (s := rng.uniform(0.4, 0.8))), round(img.height * s))
    ),
    "cropped": _crop,
    "png": _png,
    "brightness": lambda img, rng: ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.15)),
    "colour": lambda img, rng: ImageEnhance.Color(img).enhance(rng.uniform(0.7, 1.3)),
    "logo": _logo,
}


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--per-kind", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not DATASET.is_dir():
        print(f"no photos at {DATASET}; nothing measured")
        return
    folders = sorted(p for p in DATASET.iterdir() if p.is_dir())
    per_class = -(-args.photos // len(folders))
    photos = [p for f in folders for p in sorted(f.glob("*.jpg"))[:per_class]][: args.photos]
    rng = random.Random(7)
    pictures = [Image.open(p).convert("RGB") for p in photos]
    planted: list[tuple[int, str]] = []  # (original's index, kind) per copy
    copies: list[Image.Image] = []
    originals = rng.sample(range(len(photos)), min(len(photos), args.per_kind * len(KINDS)))
    for k, (kind, change) in enumerate(KINDS.items()):
        for index in originals[k * args.per_kind : (k + 1) * args.per_kind]:
            copies.append(change(pictures[index], rng))
            planted.append((index, kind))
    everything = pictures + copies
    started = time.perf_counter()
    found = [likeness.fingerprint(img) for img in everything]
    fingerprint_ms = (time.perf_counter() - started) * 1000 / len(everything) * 1000
    started = time.perf_counter()
    pairs = likeness.near_pairs(found, within=12)
    compare_ms = (time.perf_counter() - started) * 1000 / len(everything) * 1000
    truth = {(orig, len(pictures) + c) for c, (orig, _) in enumerate(planted)}
    print(
        f"{len(pictures)} distinct photos, {len(copies)} planted copies ({args.per_kind} of "
        f"each of {len(KINDS)} kinds); fingerprints {fingerprint_ms:.0f} ms per 1,000 images, "
        f"all pairs compared in {compare_ms:.0f} ms per 1,000"
    )
    results = {}
    for threshold in (6, 8, 10, 12):
        reported = {(i, j) for i, j, bits in pairs if bits <= threshold}
        right = reported & truth
        by_kind = {
            kind: sum(
                (orig, len(pictures) + c) in reported
                for c, (orig, k) in enumerate(planted)
                if k == kind
            )
            / args.per_kind
            for kind in KINDS
        }
        recall = len(right) / len(truth)
        precision = len(right) / len(reported) if reported else 1.0
        results[threshold] = (recall, precision, by_kind, len(reported) - len(right))
        mark = "  (in use)" if threshold == likeness.NEAR else ""
        print(
            f"  within {threshold:2d} bits: recall {recall:.3f}, precision {precision:.3f} "
            f"({len(reported) - len(right)} pairs of distinct photos){mark}"
        )
        print("    " + ", ".join(f"{k} {v:.1f}" for k, v in by_kind.items()))
    if args.json:
        recall, precision, by_kind, _ = results[likeness.NEAR]
        print(
            json.dumps(
                {
                    "photos": len(pictures),
                    "planted": len(copies),
                    "threshold": likeness.NEAR,
                    "recall": recall,
                    "precision": precision,
                    "by_kind": by_kind,
                    "fingerprint_ms_per_1000": round(fingerprint_ms),
                    "compare_ms_per_1000": round(compare_ms),
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:])
