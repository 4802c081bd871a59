"""Near-duplicate photos found by pixels (indexer/likeness.py), measured on planted copies.

    python scripts/bench_likeness.py [--photos 300] [--per-kind 10] [--json]
    python scripts/bench_likeness.py --index local|gemini   # through `indexer run` and
                                                             # `indexer duplicates`

Takes `--photos` distinct held-out photos of clothing-small/validation (spread over its
classes), plants `--per-kind` copies of other photos for each kind of change a catalog's
copies go through (re-encoded, resized, cropped a few percent a side, saved as PNG,
brightened or darkened, recoloured, stamped with a small logo), fingerprints everything and
reports, for thresholds around the one in use, the recall of planted pairs per kind and the
precision of the reported pairs (a pair of two distinct photos counts against it), with the
time to fingerprint 1,000 images and to compare them. With `--json` the last line is
{"photos", "planted", "threshold", "recall", "precision", "by_kind": {kind: recall},
"fingerprint_ms_per_1000", "compare_ms_per_1000"}.

With `--index PROVIDER` the same folder, with `--per-kind` byte-for-byte copies under other
names besides, is indexed by the real CLI in a fresh home (the local provider offline, or
Gemini against the fake server, told each photo's garment), and `indexer duplicates --json`
is scored: near pairs found and right, byte copies listed with their original, and a
dismissed pair gone; with the run's time per image beside the fingerprint's.
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
    parser.add_argument("--index", choices=("local", "gemini"), help="through the CLI")
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
    if args.index:
        indexed(args.index, photos, pictures, copies, planted, args.per_kind)
        return
    everything = pictures + copies
    started = time.perf_counter()
    found = [likeness.fingerprint(img) for img in everything]
    fingerprint_ms = (time.perf_counter() - started) * 1000 / len(everything) * 1000
    started = time.perf_counter()
    tried = [likeness.NEAR + step for step in (-12, -6, 0, 6)]
    pairs = likeness.near_pairs(found, within=max(tried))
    compare_ms = (time.perf_counter() - started) * 1000 / len(everything) * 1000
    truth = {(orig, len(pictures) + c) for c, (orig, _) in enumerate(planted)}
    print(
        f"{len(pictures)} distinct photos, {len(copies)} planted copies ({args.per_kind} of "
        f"each of {len(KINDS)} kinds); fingerprints {fingerprint_ms:.0f} ms per 1,000 images, "
        f"all pairs compared in {compare_ms:.0f} ms per 1,000"
    )
    results = {}
    for threshold in tried:
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
            f"  within {threshold:3d} bits: recall {recall:.3f}, precision {precision:.3f} "
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


def indexed(
    provider: str,
    photos: list[Path],
    pictures: list[Image.Image],
    copies: list[Image.Image],
    planted: list[tuple[int, str]],
    per_kind: int,
) -> None:
    """The folder through `indexer run` and `indexer duplicates`, scored."""
    import hashlib
    import os
    import shutil
    import subprocess
    import tempfile
    from contextlib import ExitStack

    from indexer.images import content_id, prepare, read_source
    from scripts.bench_gemini import KEYWORD
    from tests.fake_gemini import API_KEY, FakeGemini

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp) / "catalog"
        for folder in ("shop", "market", "backup"):
            (root / folder).mkdir(parents=True)
        originals = []
        for n, photo in enumerate(photos):
            target = root / "shop" / f"{n:04d}-{photo.name}"
            shutil.copyfile(photo, target)
            originals.append(target)
        planted_paths = []
        for c, (copy, (index, kind)) in enumerate(zip(copies, planted, strict=True)):
            target = root / "market" / f"{c:03d}-{kind}.{'png' if kind == 'png' else 'jpg'}"
            copy.save(target, quality=92)
            planted_paths.append((originals[index], target))
        bytes_copies = []
        for c, index in enumerate(random.Random(11).sample(range(len(photos)), per_kind)):
            target = root / "backup" / f"renamed-{c:03d}.jpg"
            shutil.copyfile(originals[index], target)
            bytes_copies.append((originals[index], target))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INDEXER_", "GEMINI_"))}
        env |= {"INDEXER_HOME": str(Path(tmp) / "home"), "ANONYMIZED_TELEMETRY": "False"}
        env.pop("GOOGLE_API_KEY", None)
        if provider == "gemini":
            fake = stack.enter_context(FakeGemini())
            env |= {"GEMINI_BASE_URL": fake.base_url, "GOOGLE_API_KEY": API_KEY}
            env |= {"INDEXER_GENERATION_RPM": "100000", "INDEXER_EMBEDDING_RPM": "100000"}
            labelled = [*zip(originals, photos, strict=True)]
            labelled += [
                (t, photos[i]) for (_, t), (i, _) in zip(planted_paths, planted, strict=True)
            ]
            for path, photo in labelled:
                sent = prepare(read_source(path)).jpeg
                fake.by_image[hashlib.sha256(sent).hexdigest()] = {
                    "keywords": {"garment": [KEYWORD[photo.parent.name]]},
                    "caption": "A garment.",
                }

        def cli(*argv: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "indexer", *argv], env=env, capture_output=True, text=True
            )
            if done.returncode not in (0, 1):
                raise SystemExit(done.stderr)
            return done.stdout

        started = time.perf_counter()
        ran = cli("run", str(root))
        seconds = time.perf_counter() - started
        groups = json.loads(cli("duplicates", "--json"))["groups"]
        near = {
            frozenset((a["id"], b["id"]))
            for g in groups
            if g["kind"] == "near"
            for i, a in enumerate(g["images"])
            for b in g["images"][i + 1 :]
        }
        ids = {path: content_id(path.read_bytes()) for path in root.rglob("*.*")}
        truth = {frozenset((ids[a], ids[b])) for a, b in planted_paths}
        exact = [{i["path"] for i in g["images"]} for g in groups if g["kind"] == "exact"]
        listed = sum(any({str(a), str(b)} <= g for g in exact) for a, b in bytes_copies)
        missed = sorted(
            b.stem.split("-", 1)[1]
            for a, b in planted_paths
            if frozenset((ids[a], ids[b])) not in near
        )
        named = {i: p.name for p, i in ids.items() if "renamed" not in p.name}
        strays = sorted(" ~ ".join(sorted(named[i] for i in pair)) for pair in near - truth)
        first = next(iter(truth & near), None)
        gone = None
        if first is not None:
            a, b = sorted(first)
            cli("duplicates", "--dismiss", a, b)
            again = json.loads(cli("duplicates", "--json", "--kind", "near"))["groups"]
            gone = not any({a, b} <= {i["id"] for i in g["images"]} for g in again)
        total = len(originals) + len(planted_paths) + len(bytes_copies)
        timed = time.perf_counter()
        for picture in pictures[:50]:
            likeness.fingerprint(picture)
        hashing = (time.perf_counter() - timed) / min(50, len(pictures)) * 1000
        print(ran.strip().splitlines()[0] if ran.strip() else "")
        print(
            f"{provider}: {len(originals)} distinct photos, {len(truth)} planted near copies, "
            f"{len(bytes_copies)} byte copies; indexed in {seconds:.0f}s "
            f"({seconds / total * 1000:.0f} ms an image, of which the fingerprint {hashing:.1f})"
        )
        print(
            f"  near pairs: recall {len(truth & near) / len(truth):.3f}, precision "
            f"{len(truth & near) / max(1, len(near)):.3f} ({len(near - truth)} reported pairs "
            f"not planted); byte copies listed with their original {listed} of "
            f"{len(bytes_copies)}; a dismissed pair gone: {gone}"
        )
        print(f"  planted copies missed: {', '.join(missed) or 'none'}")
        print(f"  pairs reported that were not planted: {'; '.join(strays) or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1:])
