"""The Gemini path's retrieval figures, against the fake Gemini server (no key, no network).

    python scripts/bench_retrieval.py --provider gemini [--per-class N]

The fake plays a model that tells the truth about every photo: each photo's label is
registered under the hash of the exact JPEG the provider will send, so the fake's tagger
answers that garment and its multimodal embedding model sees that garment and the photo's
dominant colour. The figures therefore measure the plumbing and the ranking rules (routes,
fusion, filters), not Gemini's vision: run the same script against the real API for that.

Prints, for clothing-small/validation and for clothing-extra: same-garment precision@5 of
`query image` by route (picture only; picture fused with captions by mean or RRF), precision@10
of class-naming text queries by route (caption; picture; both by mean; both by RRF), the
generation calls made by queries (must be 0), and tokens per indexed image.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import load_settings  # noqa: E402
from indexer.images import prepare, read_source  # noqa: E402
from indexer.providers.gemini import GeminiProvider  # noqa: E402
from indexer.store import ImageStore  # noqa: E402
from indexer.wiring import writing  # noqa: E402
from query import ranking  # noqa: E402
from query.hits import Hit, to_hits  # noqa: E402
from tests.fake_gemini import API_KEY, FakeGemini  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
# What a truthful tagger answers from the vocabulary (structured output allows nothing else).
KEYWORD = {
    "dress": "dress", "hat": "hat", "longsleeve": "long-sleeve top", "outwear": "jacket",
    "pants": "pants", "shirt": "shirt", "shoes": "shoes", "shorts": "shorts", "skirt": "skirt",
    "t-shirt": "T-shirt", "hoodie": "hoodie", "blazer": "blazer", "blouse": "blouse",
    "polo": "polo", "undershirt": "tank top", "body": "bodysuit", "top": "top",
}  # fmt: skip
QUERY = {label: f"a {label}" for label in KEYWORD} | {
    "body": "a bodysuit", "pants": "pants", "undershirt": "an undershirt",
}  # fmt: skip


def photos(name: str, per_class: int) -> dict[Path, str]:
    """Photo -> label, at most `per_class` of each label, in a stable order."""
    found: dict[str, list[Path]] = defaultdict(list)
    if name == "clothing-small":
        for folder in sorted((DATA / name / "validation").iterdir()):
            found[folder.name] = sorted(folder.glob("*.jpg"))
    else:
        with (DATA / name / "labels.csv").open() as fh:
            for row in csv.DictReader(fh):
                found[row["label"]].append(DATA / name / row["file"])
    return {p: label for label, paths in found.items() for p in sorted(paths)[:per_class]}


def searched(store: ImageStore, vector: list[float], pictures: bool) -> list[Hit]:
    return to_hits(store.query(vector, {}, 10, pictures=pictures))


def precision(hits: Sequence[Hit], label: str, labels: dict[str, str], k: int) -> float:
    return sum(labels.get(h.id) == label for h in hits[:k]) / k


def measure(name: str, per_class: int) -> None:
    catalog = photos(name, per_class)
    with FakeGemini() as fake, tempfile.TemporaryDirectory() as tmp:
        os.environ["GEMINI_BASE_URL"] = fake.base_url
        settings = load_settings(
            home=Path(tmp), google_api_key=API_KEY, generation_rpm=100_000,
            embedding_rpm=100_000, batch_size=32,
        )  # fmt: skip
        labels: dict[str, str] = {}
        for path, label in catalog.items():
            source = read_source(path)
            sent = prepare(source, settings.image_max_side).jpeg
            fake.by_image[hashlib.sha256(sent).hexdigest()] = {
                "keywords": {"garment": [KEYWORD[label]]},
                "caption": f"A {label}.",
            }
            labels[source.id] = label
        provider = GeminiProvider(settings)
        worker = writing(settings, provider)
        store = worker.store
        started = time.monotonic()
        report = worker.run(sorted(catalog))
        usage = provider.usage
        print(
            f"\n{name}: indexed {report.indexed} of {len(catalog)} photos "
            f"({len(set(catalog.values()))} labels) in {time.monotonic() - started:.0f}s; "
            f"{usage.tokens / max(report.indexed, 1):,.0f} tokens per image"
        )
        generated = fake.count("generateContent")

        by_image: dict[str, list[float]] = defaultdict(list)
        for path, label in catalog.items():
            source = read_source(path)
            picture = provider.embed_images([prepare(source, settings.image_max_side)])[0]
            found = {
                "picture": [
                    h
                    for h in to_hits(store.query(picture, {}, 6, pictures=True))
                    if h.id != source.id
                ],
            }
            candidates = [
                c for c in store.candidates(picture, picture, {}, 40) if c.id != source.id
            ]
            found["picture+caption (mean)"] = ranking.fused(candidates, picture, picture, 5)
            found["picture+caption (RRF)"] = ranking.reciprocal_rank(
                candidates, picture, picture, 5
            )
            for route, hits in found.items():
                by_image[route].append(precision(hits, label, labels, 5))
        print("  query image, same-garment precision@5:")
        for route, values in by_image.items():
            print(f"    {route:<26} {statistics.mean(values):.3f}")

        by_text: dict[str, list[float]] = defaultdict(list)
        for label in sorted(set(catalog.values())):
            vector = provider.embed_queries([QUERY[label]])[0]
            candidates = store.candidates(vector, vector, {}, 40)
            routes: dict[str, Callable[[], list[Hit]]] = {
                "caption": partial(searched, store, vector, pictures=False),
                "picture": partial(searched, store, vector, pictures=True),
                "both (mean)": partial(ranking.fused, candidates, vector, vector, 10),
                "both (RRF)": partial(ranking.reciprocal_rank, candidates, vector, vector, 10),
            }
            for route, run in routes.items():
                by_text[route].append(precision(run(), label, labels, 10))
        print("  class-naming text queries, precision@10:")
        for route, values in by_text.items():
            print(f"    {route:<26} {statistics.mean(values):.3f}")
        print(f"  generation calls made by queries: {fake.count('generateContent') - generated}")
        store.close()
        provider.close()


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="gemini")
    parser.add_argument("--per-class", type=int, default=40, help="photos per label")
    args = parser.parse_args(argv)
    for name in ("clothing-small", "clothing-extra"):
        if not (DATA / name).is_dir():
            print(f"{name}: not found at {DATA / name}; skipped")
            continue
        measure(name, args.per_class)


if __name__ == "__main__":
    main(sys.argv[1:])
