"""Text-query latency of the offline provider at catalog scale.

    python scripts/bench_query.py --records 10000

Fills a temporary embedded store with N records whose vectors are MiniLM embeddings of
generated "keywords. caption" texts, then times `QueryClient.text` (query embedding and
Chroma search; model loaded, process start excluded), with and without a keyword filter,
and prints p50 and p99.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import load_settings  # noqa: E402
from indexer.pipeline import document_text  # noqa: E402
from indexer.providers.local import LocalProvider, compose_caption  # noqa: E402
from indexer.store import ImageRecord, ImageStore  # noqa: E402
from indexer.vocabulary import Vocabulary  # noqa: E402
from query import QueryClient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    vocab = Vocabulary.load()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), collection="bench")
        provider = LocalProvider(settings)
        store = ImageStore.open(settings)
        store.prepare_for_writing(provider.embedding_spec)
        started = time.monotonic()
        for start in range(0, args.records, 1000):
            batch = []
            for i in range(start, min(start + 1000, args.records)):
                kw = {
                    f: [rng.choice(words)]
                    for f, words in vocab.facets.items()
                    if rng.random() < 0.7
                }
                batch.append((i, kw, compose_caption(kw)))
            vectors = provider.embed_documents([document_text(k, c) for _, k, c in batch])
            store.upsert(
                [
                    ImageRecord(
                        f"{i:08d}",
                        f"/catalog/{i}.jpg",
                        c,
                        k,
                        k,
                        v,
                        provider.model_ids,
                        vocab.fingerprint,
                    )
                    for (i, k, c), v in zip(batch, vectors, strict=True)
                ]
            )
        print(f"filled {store.count()} records in {time.monotonic() - started:.1f}s")
        client = QueryClient(settings, store=store, provider=provider)
        texts = [
            "a red summer dress",
            "black leather shoes",
            "wool winter coat for men",
            "colorful dress",
            "denim shorts",
        ]
        client.text(texts[0])  # warm-up: model and index loaded
        for label, where in (("no filter", None), ("season=summer", {"season": "summer"})):
            times = []
            for q in range(args.queries):
                t0 = time.perf_counter()
                client.text(texts[q % len(texts)], where=where, limit=10)
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
            print(
                f"{label:14s} p50 {statistics.median(times):6.1f} ms   p99 {p99:6.1f} ms"
                f"   ({args.queries} queries, {args.records} records, embedded Chroma)"
            )


if __name__ == "__main__":
    main()
