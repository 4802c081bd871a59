"""Retrieval quality and query latency on clothing-small/validation (and clothing-extra).

    python scripts/bench_retrieval.py                     # the offline provider
    python scripts/bench_retrieval.py --provider gemini   # the Gemini path, against the fake

Local: indexes the validation photos with the local provider into a temporary store, then
prints garment top-1 accuracy of the stored tags, image -> image precision@5 (same class, the
query photo itself excluded), text -> image precision@10 for queries that name each class,
and the median text-query latency (model loaded, process start excluded).

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
from indexer.enrich import Enricher  # noqa: E402
from indexer.pipeline import Indexer  # noqa: E402
from indexer.providers.local import LocalProvider  # noqa: E402
from indexer.store import ImageStore  # noqa: E402
from indexer.vocabulary import Vocabulary  # noqa: E402
from query import QueryClient  # noqa: E402
from scripts.train_garment_head import CLASS_TO_KEYWORD  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "clothing-small" / "validation"
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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), google_api_key=None)
        provider = LocalProvider(settings)
        enricher = Enricher.create(settings, provider, Vocabulary.load())
        store = ImageStore.open(
            settings, write=True, spec=enricher.spec, image_spec=enricher.image_spec
        )
        started = time.monotonic()
        report = Indexer(settings, enricher, store).run([DATASET])
        seconds = time.monotonic() - started
        print(
            f"indexed {report.indexed} photos in {seconds:.1f}s "
            f"= {report.indexed / seconds:.1f} images/s (model load included)"
        )

        client = QueryClient(settings, store=store, provider=provider)
        everything = client.text("clothes", limit=1000)
        class_of = {h.id: Path(h.path).parent.name for h in everything}
        right = sum(
            h.keywords.get("garment") == [CLASS_TO_KEYWORD[class_of[h.id]]] for h in everything
        )
        print(f"garment top-1 accuracy (stored tags)   {right / len(everything):.3f}")

        precisions = []
        for hit in everything:
            similar = [h for h in client.image(hit.path, limit=6) if h.id != hit.id][:5]
            precisions.append(sum(class_of[h.id] == class_of[hit.id] for h in similar) / 5)
        print(f"image -> image precision@5            {statistics.mean(precisions):.3f}")

        per_class = {}
        latencies = []
        for cls, text in QUERIES.items():
            t0 = time.perf_counter()
            hits = client.text(text, limit=10)
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
