"""Retrieval quality and query latency on clothing-small/validation (and clothing-extra).

    python scripts/bench_retrieval.py                     # the offline provider
    python scripts/bench_retrieval.py --provider gemini   # the Gemini path, against the fake

Local: indexes the validation photos and clothing-extra's held-out half (the photos
scripts/train_garment_head.py kept out of training) with the local provider into a
temporary store, then prints the stored garment tags' accuracy per class on both sets (a
withheld tag counts as wrong; "class-balanced" is the mean of per-class accuracy), and on
the validation photos image -> image precision@5 (same class, the query photo itself
excluded), text -> image precision@10 for queries that name each class, and the median
text-query latency (model loaded, process start excluded); then the two speed ratios of
scripts/bench_speed.py (`--no-speed` skips them, `--speed` runs only them).

Gemini: see scripts/bench_gemini.py (the same figures per route and per fusion, for both
datasets, against the fake Gemini server).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import load_settings  # noqa: E402
from indexer.pipeline import Indexer  # noqa: E402
from indexer.providers.local import LocalProvider  # noqa: E402
from indexer.wiring import writing  # noqa: E402
from query import QueryClient  # noqa: E402
from scripts.train_garment_head import CLASS_TO_KEYWORD, FAMILIAR, splits  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "clothing-small" / "validation"
EXTRA = ROOT.parent / "shared" / "datasets" / "clothing-extra"
QUERIES = {
    "dress": "a dress",
    "hat": "a hat",
    "longsleeve": "a long-sleeve top",
    "outwear": "a jacket",
    "pants": "pants",
    "shirt": "a shirt",
    "shoes": "shoes",
    "shorts": "shorts",
    "skirt": "a skirt",
    "t-shirt": "a T-shirt",
}


def accuracy_per_class(name: str, truth: dict[str, str], stored: dict[str, list[str]]) -> None:
    """Stored garment tag against the photo's label, per class; `truth` maps path -> keyword."""
    classes = sorted(set(truth.values()))
    per_class = {}
    for keyword in classes:
        paths = [p for p, k in truth.items() if k == keyword]
        per_class[keyword] = sum(stored.get(p) == [keyword] for p in paths) / len(paths)
        print(f"    {keyword:16s} {per_class[keyword]:.3f}  ({len(paths)})")
    tagged = [p for p in truth if stored.get(p)]
    right = sum(stored[p] == [truth[p]] for p in tagged)
    top1 = sum(stored.get(p) == [k] for p, k in truth.items()) / len(truth)
    line = (
        f"  {name}: garment top-1 {top1:.3f}, "
        f"class-balanced {statistics.mean(per_class.values()):.3f}; "
        f"stored tags right {right / max(len(tagged), 1):.3f}, "
        f"untagged {1 - len(tagged) / len(truth):.1%}"
    )
    familiar = [per_class[k] for k in classes if k in FAMILIAR]
    new = [per_class[k] for k in classes if k not in FAMILIAR]
    if familiar and new:
        line += (
            f"; familiar ten {statistics.mean(familiar):.3f}, new types {statistics.mean(new):.3f}"
        )
    print(line)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), google_api_key=None)
        provider = LocalProvider(settings)
        worker = writing(settings, provider)
        enricher, store = worker.enricher, worker.store
        started = time.monotonic()
        report = worker.run([DATASET])
        seconds = time.monotonic() - started
        print(
            f"indexed {report.indexed} photos in {seconds:.1f}s "
            f"= {report.indexed / seconds:.1f} images/s (model load included)"
        )
        held_out = {str(p): k for p, k in splits()["holdout"]} if EXTRA.is_dir() else {}
        if held_out:
            Indexer(settings, enricher, store).run([Path(p) for p in held_out], remember=False)

        client = QueryClient(settings, store=store, provider=provider)
        every_record = client.text("clothes", limit=1000)
        stored = {h.path: h.keywords.get("garment", []) for h in every_record}
        print("garment tags stored, per class:")
        validation = {
            p: CLASS_TO_KEYWORD[Path(p).parent.name] for p in stored if p.startswith(str(DATASET))
        }
        accuracy_per_class("clothing-small/validation", validation, stored)
        if held_out:
            accuracy_per_class("clothing-extra held-out half", held_out, stored)

        everything = [h for h in every_record if h.path in validation]
        class_of = {h.id: Path(h.path).parent.name for h in everything}

        precisions = []
        for hit in everything:
            similar = [
                h for h in client.image(hit.path, limit=40) if h.id != hit.id and h.id in class_of
            ][:5]
            precisions.append(sum(class_of[h.id] == class_of[hit.id] for h in similar) / 5)
        print(f"image -> image precision@5            {statistics.mean(precisions):.3f}")

        per_class = {}
        latencies = []
        for cls, text in QUERIES.items():
            t0 = time.perf_counter()
            hits = [h for h in client.text(text, limit=40) if h.id in class_of][:10]
            latencies.append(time.perf_counter() - t0)
            per_class[cls] = sum(class_of[h.id] == cls for h in hits) / 10
        print(f"text -> image precision@10 (mean)      {statistics.mean(per_class.values()):.3f}")
        print("  " + ", ".join(f"{c} {p:.1f}" for c, p in per_class.items()))
        for _ in range(40):
            t0 = time.perf_counter()
            client.text("a red summer dress", limit=10)
            latencies.append(time.perf_counter() - t0)
        print(
            f"text query latency median             {statistics.median(latencies) * 1000:.1f} ms"
            f" at {len(everything)} records"
        )


if __name__ == "__main__":
    if "--speed" in sys.argv:
        from scripts.bench_speed import main as speed_main

        speed_main()
    elif "--provider" in sys.argv and sys.argv[sys.argv.index("--provider") + 1] == "gemini":
        from scripts.bench_gemini import main as gemini_main

        gemini_main(sys.argv[1:])
    else:
        main()
        if "--no-speed" not in sys.argv:
            from scripts.bench_speed import main as speed_main

            speed_main()
