"""Filtered and unfiltered search latency and recall at catalog scale, embedded and server.

    python scripts/bench_query.py                                   # 10,000 and 100,000
    python scripts/bench_query.py --records 1000000 --mode embedded --json

Fills a fresh collection with N records shaped like real ones (one keyword per facet, so
`season=summer` matches about 25% and `garment=dress` + `season=summer` about 1%; a caption;
a "keywords. caption" vector from the offline provider's MiniLM), then times the search as
`QueryClient` runs it (the planner, then Chroma), with the query embedding computed once
beforehand and reported separately, and prints p50 and p99 per filter, and recall@10 against
exact brute-force search with the same filter over the same vectors, and how the planner ran
it (which keyword partition, over-fetch or pre-filter). With `--json` the last line is one
JSON object: {"records", "mode", "partitioned", "embedding_ms", "cases": [{"filter", "plan",
"matching_fraction", "p50_ms", "p99_ms", "recall_at_10", "recall_at_10_ties"}]}, and for the
unfiltered case "chroma_only_p50_ms": the same search through Chroma alone, ids and distances
only, the floor that HNSW itself sets and that grows with the catalog. The second
recall is ann-benchmarks' "knn" recall, which counts a hit no further than the exact 10th
neighbour plus 1e-3 (the fill's near-duplicates make such ties common).
`--partition-facets ''` measures the planner without partitions. A filter term written
"-facet=keyword" is an exclusion; `pattern` is a facet a shop would teach (`TAUGHT`), which
a catalog kept with `--store` before it was added lacks: fill such a catalog again.

Vectors: 2,000 distinct generated documents are embedded with MiniLM, and each record takes
one of them plus noise, so that filling a million records takes minutes, not hours.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.config import Settings, load_settings  # noqa: E402
from indexer.enrich import document_text  # noqa: E402
from indexer.providers.local import LocalProvider, compose_caption  # noqa: E402
from indexer.records import ImageRecord  # noqa: E402
from indexer.store import ImageStore  # noqa: E402
from indexer.store.connection import connect  # noqa: E402
from indexer.vocabulary import FilterLike, Filters, Keywords, Vocabulary  # noqa: E402
from query import QueryClient  # noqa: E402
from query.planner import matches  # noqa: E402
from tests.conftest import ChromaServer  # noqa: E402

# A facet a shop teaches the offline provider with `indexer train-tagger`: in no default
# partition, like every facet but garment and season.
TAUGHT = {"pattern": ["plain", "striped", "floral", "checked", "dotted"]}
TEXTS = ["a red summer dress", "black leather shoes", "wool winter coat for men", "colorful dress"]
DISTINCT = 2_000
FILL_CHUNK = 2_000


@contextmanager
def store_settings(mode: str, tmp: Path, partitions: str | None) -> Iterator[Settings]:
    """Chroma on disk under `tmp/chroma`, opened embedded or through a `chroma run` server on
    that same folder (so one fill serves both modes with `--store`)."""
    # The user's exported models, not a fresh export into the throwaway home.
    extra: dict[str, object] = {"models_path": load_settings().models_dir}
    if partitions is not None:
        extra["partition_facets_text"] = partitions
    if mode == "embedded":
        yield load_settings(home=tmp, collection="bench", **extra)
        return
    server = ChromaServer(tmp / "chroma", tmp / "server.log")
    server.start()
    try:
        yield load_settings(
            home=tmp,
            collection="bench",
            chroma_host=server.host,
            chroma_port=server.port,
            **extra,
        )
    finally:
        server.stop()


_EMBEDDED: dict[tuple[str, ...], np.ndarray] = {}  # each size's catalog reuses the same kinds


def fill(
    store: ImageStore,
    provider: LocalProvider,
    vocab: Vocabulary,
    records: int,
    write: bool,
    distinct: int = DISTINCT,
    written: int = 0,
) -> tuple[np.ndarray, list[Keywords]]:
    """Write `records` records drawn from `distinct` kinds (keywords and caption) with noise
    on their vectors (or, with `write` false, generate the same ones again for a store filled
    before; the first `written` are generated but not written again, to finish a fill that
    stopped or to grow a kept catalog); return their vectors and keywords for exact search."""
    rng = random.Random(0)
    taught = random.Random(1)  # its own draws: the other facets' stay as they were
    noise = np.random.default_rng(0)
    kinds: list[tuple[Keywords, str]] = []
    for _ in range(distinct):
        kw = {f: [rng.choice(w)] for f, w in vocab.facets.items() if f not in TAUGHT}
        kw |= {f: [taught.choice(w)] for f, w in TAUGHT.items() if f in vocab.facets}
        kinds.append((kw, compose_caption(kw)))
    texts = tuple(document_text(k, c) for k, c in kinds)
    if texts not in _EMBEDDED:
        _EMBEDDED[texts] = np.asarray(provider.embed_documents(list(texts)))
    base = _EMBEDDED[texts]
    vectors = np.zeros((records, base.shape[1]), dtype=np.float32)
    keywords: list[Keywords] = []
    for start in range(0, records, FILL_CHUNK):
        rows = range(start, min(start + FILL_CHUNK, records))
        picks = [rng.randrange(distinct) for _ in rows]
        chunk = base[picks] + noise.normal(0, 0.05, (len(picks), base.shape[1]))
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        vectors[start : start + len(picks)] = chunk
        keywords.extend(kinds[j][0] for j in picks)
        if not write or rows.stop <= written:
            continue
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
                for i, j, v in zip(rows, picks, chunk, strict=True)
            ]
        )
    return vectors, keywords


CASES: list[tuple[str, FilterLike]] = [
    ("none", {}),
    ("season=summer", {"season": ["summer"]}),
    ("garment=dress,season=summer", {"garment": ["dress"], "season": ["summer"]}),
    # Colour is not partitioned by default: the planner's over-fetch / pre-filter path.
    ("color=red", {"color": ["red"]}),
    ("color=red,material=silk", {"color": ["red"], "material": ["silk"]}),
    # Exclusions ("-" for left out): broad alone, within a partition, and narrow.
    ("-color=black", Filters({}, {"color": ["black"]})),
    ("season=summer,-color=black", Filters({"season": ["summer"]}, {"color": ["black"]})),
    # Three terms, none partitioned but season; and the taught facet.
    (
        "color=red,material=silk,season=summer",
        {"color": ["red"], "material": ["silk"], "season": ["summer"]},
    ),
    ("pattern=striped", {"pattern": ["striped"]}),
    ("pattern=floral,color=blue", {"pattern": ["floral"], "color": ["blue"]}),
    (
        "-season=summer,-season=winter,-season=fall",
        Filters({}, {"season": ["summer", "winter", "fall"]}),
    ),
]


@contextmanager
def folder(kept: Path | None, records: int) -> Iterator[Path]:
    if kept is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)
    else:
        (kept / str(records)).mkdir(parents=True, exist_ok=True)
        yield kept / str(records)


def chroma_only(settings: Settings, vectors: list[list[float]]) -> float:
    """p50 ms of the same unfiltered search through Chroma alone, reading ids and distances
    only: the floor under the unfiltered case, and the part of it that grows with the
    catalog (HNSW's own search), apart from reading the records and our planning."""
    client, _ = connect(settings)
    collection = client.get_collection(settings.collection, embedding_function=None)
    collection.query(query_embeddings=[vectors[0]], n_results=10, include=["distances"])
    times = []
    for vector in vectors:
        t0 = time.perf_counter()
        collection.query(query_embeddings=[vector], n_results=10, include=["distances"])
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def measure(
    mode: str,
    records: int,
    queries: int,
    partitions: str | None = None,
    kept: Path | None = None,
    fill_only: bool = False,
    distinct: int = DISTINCT,
) -> dict[str, object]:
    vocab = Vocabulary.from_mapping(
        {**{f: list(w) for f, w in Vocabulary.load().facets.items()}, **TAUGHT}
    )
    with (
        folder(kept, records) as tmp,
        store_settings(mode, tmp, partitions) as settings,
    ):
        provider = LocalProvider(settings)
        store = ImageStore.open(settings, write=True, spec=provider.embedding_spec)
        started = time.monotonic()
        filled = store.count()
        if filled not in (0, records):
            raise SystemExit(f"{tmp} holds {filled} records, not {records}: remove it first")
        vectors, keywords = fill(store, provider, vocab, records, not filled, distinct)
        if filled:
            print(f"{mode}: reusing the {filled} records kept in {tmp}")
        else:
            print(f"{mode}: filled {store.count()} records in {time.monotonic() - started:.0f}s")
        if fill_only:
            store.close()
            return {"records": records, "mode": mode, "cases": []}
        client = QueryClient(settings, store=store, provider=provider)
        texts = [f"{t} {i}" for i in range(queries) for t in TEXTS][:queries]
        t0 = time.perf_counter()
        query_vectors = provider.embed_queries(texts)
        embedding_ms = (time.perf_counter() - t0) * 1000 / len(texts)
        client.text(TEXTS[0])  # warm-up: index and caches loaded
        cases = []
        for label, where in CASES:
            mask = np.array([matches(k, where) for k in keywords]) if where else None
            client.planner.nearest(query_vectors[0], 10, where)  # each plan's first use
            times, recalls, tied = [], [], []
            found = []
            for vector in query_vectors:
                t0 = time.perf_counter()
                near = client.planner.nearest(vector, 10, where)
                store.answer(near)
                times.append((time.perf_counter() - t0) * 1000)
                found.append(near)
            # Exact search after the timed queries, as ann-benchmarks does: between them, a
            # scan of every vector (1.5 GB at a million) slowed the searches it separated
            # (a million records: 1-3 ms on each p50, 10 ms on the 1% filter's p99).
            for vector, near in zip(query_vectors, found, strict=True):
                scores = vectors @ np.asarray(vector, dtype=np.float32)
                if mask is not None:
                    scores = np.where(mask, scores, -np.inf)
                order = np.argsort(-scores)[:10]
                truth = {f"{i:08d}" for i in order if np.isfinite(scores[i])}
                # Nothing matches: the right answer is no hit at all.
                right = len(truth & {n.id for n in near}) / len(truth) if truth else float(not near)
                recalls.append(right)
                # ann-benchmarks' "knn" recall: a hit counts if it is no further than the
                # exact 10th neighbour plus 1e-3 (near-ties are interchangeable).
                kth = scores[order[-1]] if len(truth) == 10 else -np.inf
                got = [scores[int(n.id)] >= kth - 1e-3 for n in near]
                tied.append(min(sum(got), len(truth)) / len(truth) if truth else float(not near))
            times.sort()
            case = {
                "filter": label,
                "plan": " -> ".join(client.planner.last_plan) or "unfiltered",
                "matching_fraction": round(float(mask.mean()) if mask is not None else 1.0, 4),
                "p50_ms": round(statistics.median(times), 2),
                "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
                "recall_at_10": round(statistics.mean(recalls), 4),
                "recall_at_10_ties": round(statistics.mean(tied), 4),
            }
            if not where:
                case["chroma_only_p50_ms"] = chroma_only(settings, query_vectors)
            cases.append(case)
            print(
                f"  {records:>8} {mode:8s} {label:28s} share {case['matching_fraction']:.3f}  "
                f"p50 {case['p50_ms']:6.1f} ms  p99 {case['p99_ms']:6.1f} ms  "
                f"recall@10 {case['recall_at_10']:.3f} ({case['recall_at_10_ties']:.3f} with "
                f"ties)  ({case['plan']})",
                flush=True,
            )
            if "chroma_only_p50_ms" in case:
                print(
                    f"  {'':8} {'':8} {'(Chroma alone: ids and distances)':28s} {'':11}  "
                    f"p50 {case['chroma_only_p50_ms']:6.1f} ms",
                    flush=True,
                )
        store.close()
        return {
            "records": records,
            "mode": mode,
            "partitioned": list(settings.partition_facets),
            "embedding_ms": round(embedding_ms, 2),
            "cases": cases,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, action="append")
    parser.add_argument("--mode", choices=["embedded", "server"], action="append")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--distinct",
        type=int,
        default=DISTINCT,
        help=f"distinct keyword sets and captions the records are drawn from (default {DISTINCT})",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument(
        "--partition-facets",
        help="facets to partition (default: INDEXER_PARTITION_FACETS, garment,season); "
        "'' for none, to measure the planner alone",
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="keep the filled collection in STORE/<records> and reuse it on the next run "
        "(a million records take most of an hour to fill; the server mode opens the same "
        "folder); partitioning is fixed by the first fill",
    )
    parser.add_argument(
        "--fill-only", action="store_true", help="fill STORE and stop (time the queries later)"
    )
    args = parser.parse_args()
    if args.fill_only and args.store is None:
        parser.error("--fill-only needs --store")
    results = [
        measure(
            mode,
            records,
            args.queries,
            args.partition_facets,
            args.store,
            args.fill_only,
            args.distinct,
        )
        for records in args.records or [10_000, 100_000]
        for mode in args.mode or ["embedded", "server"]
    ]
    for line in ratios(results):
        print(line)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))


def ratios(results: list[dict[str, Any]]) -> list[str]:
    """The ratios within this run: each filter's p50 over the unfiltered p50 at the
    same size (its target, at most 2x, is for the partitioned facets' filters), and the
    unfiltered p50 of each size over the smallest's, beside Chroma alone's."""
    lines = []
    for mode in dict.fromkeys(str(r["mode"]) for r in results):
        runs = sorted(
            (r for r in results if r["mode"] == mode and r["cases"]),
            key=lambda r: int(r["records"]),
        )
        for run in runs:
            cases = run["cases"]
            assert isinstance(cases, list)
            none = cases[0]["p50_ms"]
            each = ", ".join(f"{c['filter']} {c['p50_ms'] / none:.2f}x" for c in cases[1:])
            lines.append(f"{mode} {run['records']}: p50 over the unfiltered p50: {each}")
        if len(runs) > 1:
            small = runs[0]["cases"][0]
            for run in runs[1:]:
                big = run["cases"][0]
                lines.append(
                    f"{mode}: unfiltered p50 at {run['records']} over {runs[0]['records']}: "
                    f"{big['p50_ms'] / small['p50_ms']:.2f}x (Chroma alone "
                    f"{big['chroma_only_p50_ms'] / small['chroma_only_p50_ms']:.2f}x)"
                )
    return lines


if __name__ == "__main__":
    main()
