"""Text-query latency at catalog scale, embedded Chroma and a Chroma server.

    python scripts/bench_query.py                          # 10,000 and 100,000, both modes
    python scripts/bench_query.py --records 10000 --mode embedded

Fills a fresh collection with N records shaped like real ones (facet keyword lists, caption,
"keywords. caption" vector from the offline provider's MiniLM), then times
`QueryClient.text` (query embedding plus Chroma search; model loaded, process start
excluded), with and without a `season=summer` filter, and prints p50 and p99.

Vectors: 2,000 distinct generated documents are embedded with MiniLM, and each record takes
one of them plus a little noise, so that filling 100,000 records takes minutes, not an hour.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import Settings, load_settings  # noqa: E402
from indexer.enrich import document_text  # noqa: E402
from indexer.providers.local import LocalProvider, compose_caption  # noqa: E402
from indexer.records import ImageRecord  # noqa: E402
from indexer.store import ImageStore  # noqa: E402
from indexer.vocabulary import Keywords, Vocabulary  # noqa: E402
from query import QueryClient  # noqa: E402
from tests.conftest import ChromaServer  # noqa: E402

TEXTS = ["a red summer dress", "black leather shoes", "wool winter coat for men", "colorful dress"]
DISTINCT = 2_000


@contextmanager
def store_settings(mode: str, tmp: Path) -> Iterator[Settings]:
    if mode == "embedded":
        yield load_settings(home=tmp, collection="bench")
        return
    server = ChromaServer(tmp / "server", tmp / "server.log")
    server.start()
    try:
        yield load_settings(
            home=tmp, collection="bench", chroma_host=server.host, chroma_port=server.port
        )
    finally:
        server.stop()


def fill(store: ImageStore, provider: LocalProvider, vocab: Vocabulary, records: int) -> None:
    rng = random.Random(0)
    noise = np.random.default_rng(0)
    kinds: list[tuple[Keywords, str]] = []
    for _ in range(DISTINCT):
        kw = {f: [rng.choice(w)] for f, w in vocab.facets.items() if rng.random() < 0.7}
        kinds.append((kw, compose_caption(kw)))
    base = np.asarray(provider.embed_documents([document_text(k, c) for k, c in kinds]))
    for start in range(0, records, 1000):
        rows = range(start, min(start + 1000, records))
        picks = [rng.randrange(DISTINCT) for _ in rows]
        vectors = base[picks] + noise.normal(0, 0.02, (len(picks), base.shape[1]))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert(
            [
                ImageRecord(
                    f"{i:08d}",
                    f"/catalog/{i}.jpg",
                    kinds[j][1],
                    kinds[j][0],
                    kinds[j][0],
                    v.tolist(),
                    provider.model_ids,
                    vocab.fingerprint,
                )
                for i, j, v in zip(rows, picks, vectors, strict=True)
            ]
        )


def measure(mode: str, records: int, queries: int) -> None:
    vocab = Vocabulary.load()
    with tempfile.TemporaryDirectory() as tmp, store_settings(mode, Path(tmp)) as settings:
        provider = LocalProvider(settings)
        store = ImageStore.open(settings, write=True, spec=provider.embedding_spec)
        started = time.monotonic()
        fill(store, provider, vocab, records)
        print(f"{mode}: filled {store.count()} records in {time.monotonic() - started:.0f}s")
        client = QueryClient(settings, store=store, provider=provider)
        for text in TEXTS:  # warm-up: model, index and caches loaded
            client.text(text)
        for label, where in (("no filter", None), ("season=summer", {"season": "summer"})):
            times = []
            for q in range(queries):
                t0 = time.perf_counter()
                client.text(TEXTS[q % len(TEXTS)], where=where, limit=10)
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
            print(
                f"  {records:>7} records {mode:8s} {label:14s} "
                f"p50 {statistics.median(times):6.1f} ms   p99 {p99:6.1f} ms   ({queries} queries)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, action="append")
    parser.add_argument("--mode", choices=["embedded", "server"], action="append")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    for records in args.records or [10_000, 100_000]:
        for mode in args.mode or ["embedded", "server"]:
            measure(mode, records, args.queries)


if __name__ == "__main__":
    main()
