"""The query planner: how to run a filtered nearest-neighbour search fast at any size.

Chroma's embedded executor answers a filtered query by gathering every matching id (a scan
of the metadata) and handing the allow-list to HNSW: measured at 100,000 records, about
60 ms whether the filter matches 25% or 1%, growing with the catalog. An unfiltered HNSW
search stays at a few milliseconds, plus a fixed cost for each neighbour read with its
keywords (the cost model below). So the planner over-fetches the unfiltered nearest
neighbours and filters them itself, widening until it has enough (the first `limit` matches
among the nearest are exactly the best `limit` matches), whenever reading that many
neighbours costs less than Chroma's scan of the catalog: always for broad filters on large
catalogs, rarely on small ones, where the scan is cheap anyway.

A filter's share of the catalog is estimated from the keywords of a few thousand records
sampled across the collection, kept per planner and refreshed every few minutes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Sequence

from indexer.records import Neighbour
from indexer.store import ImageStore
from indexer.vocabulary import FilterLike, Filters, Keywords, matches

# Cost model, measured on embedded Chroma (2 cores) at 100,000 and 200,000 records of the
# default vocabulary: a pre-filtered query scans the searched collection's metadata at about
# 0.9 us a record; reading a neighbour with its metadata costs about 85 us (Chroma hydrates
# one row per key, and a record has about fifteen). Within a keyword partition the scan costs
# about 1.4 us a record and a neighbour's keyword document about 16 us (partitions.py).
# Over-fetching wins while fetch * fetch cost < records * scan cost.
SCAN_MS_PER_RECORD = 0.0009
FETCH_MS_PER_NEIGHBOUR = 0.085
PARTITION_SCAN_MS_PER_RECORD = 0.0014
PARTITION_FETCH_MS_PER_NEIGHBOUR = 0.016
MAX_FETCH = 5_000
BROAD = 0.001  # rarer filters are always pre-filtered
SAMPLE_SIZE = 4_000
RESAMPLE_AFTER = 300.0  # seconds; a catalog's mix of keywords changes slowly

__all__ = ["Planner", "matches"]


class Planner:
    def __init__(self, store: ImageStore, scan_ms_per_record: float = SCAN_MS_PER_RECORD) -> None:
        self._store = store
        self._scan_ms = scan_ms_per_record
        self._sample: list[Keywords] = []
        self._rows: dict[tuple[str, str], int] = {}  # keyword -> bitset of sampled records
        self._sampled_at = 0.0
        self._records = 0
        self._lock = threading.Lock()
        self.last_plan: list[str] = []  # the steps of the latest `nearest`, for benchmarks

    def share(self, where: FilterLike) -> float:
        """Estimated fraction of the catalog that `where` matches (1.0 without a filter)."""
        given = Filters.of(where)
        if not given:
            return 1.0
        sample = self._keywords()
        if not sample:
            return 0.0
        # One bit per sampled record and keyword: a share is an AND and a popcount, some
        # microseconds, where testing 4,000 records in Python took milliseconds a term.
        everyone = (1 << len(sample)) - 1
        rows = everyone
        for term in given.required:
            rows &= self._rows.get(term, 0)
        for term in given.excluded:
            rows &= everyone ^ self._rows.get(term, 0)
        return rows.bit_count() / len(sample)

    def _keywords(self) -> list[Keywords]:
        with self._lock:
            # Checked by time alone: counting the collection on every query would cost more
            # than the plan saves.
            if not self._sample or time.monotonic() - self._sampled_at > RESAMPLE_AFTER:
                self._records = self._store.count()
                self._sample = self._store.sample_keywords(SAMPLE_SIZE)
                self._sampled_at = time.monotonic()
                rows: dict[tuple[str, str], int] = defaultdict(int)
                for i, keywords in enumerate(self._sample):
                    for facet, words in keywords.items():
                        for word in words:
                            rows[(facet, word)] |= 1 << i
                self._rows = dict(rows)
            return self._sample

    def untagged(self, facets: Sequence[str]) -> list[str]:
        """Those of `facets` that no sampled record has a keyword of (all records, on a
        collection smaller than the sample)."""
        sample = self._keywords()
        return [f for f in facets if not any(k.get(f) for k in sample)]

    def over_fetch(
        self, limit: int, share: float, records: int | None = None, partition: bool = False
    ) -> int | None:
        """How many unfiltered neighbours to read for `limit` matches among `records` (the
        catalog by default; with `partition`, a keyword partition of that size), or None
        when letting Chroma pre-filter is cheaper."""
        if share < BROAD:
            return None
        return self._affordable(max(50, math.ceil(limit / share * 1.5)), records, partition)

    def _affordable(
        self, fetch: int, records: int | None = None, partition: bool = False
    ) -> int | None:
        """`fetch`, if reading that many neighbours costs less than a pre-filtered query."""
        records = self._records if records is None else records
        if partition:
            scan_ms = records * PARTITION_SCAN_MS_PER_RECORD
            fetch_ms = fetch * PARTITION_FETCH_MS_PER_NEIGHBOUR
        else:
            scan_ms, fetch_ms = records * self._scan_ms, fetch * FETCH_MS_PER_NEIGHBOUR
        if fetch > MAX_FETCH or fetch_ms > scan_ms:
            return None
        return fetch

    def nearest(
        self, vector: Sequence[float], limit: int, where: FilterLike, pictures: bool = False
    ) -> list[Neighbour]:
        """The `limit` nearest records that satisfy `where` (all of them if fewer match).
        `last_plan` says how: the partition searched, each over-fetch's size, and
        "pre-filter" if it came to that."""
        self.last_plan = []
        given = Filters.of(where)
        if not given:
            return self._store.nearest(vector, limit, None, pictures, whole=True)
        share = self.share(given)
        term = self._partition_term(given, pictures)
        if term is None:
            return self._filtered(vector, limit, given, pictures, None, share, self._records)
        # A partition holds exactly the records with that keyword: search it, and filter the
        # other terms (exclusions too) within it, where a scan is as small as the partition.
        facet, keyword = term
        self.last_plan.append(f"partition {facet}={keyword}")
        rest = {f: [w for w in words if (f, w) != term] for f, words in given.where.items()}
        within_rest = given.but({f: words for f, words in rest.items() if words})
        if not within_rest:
            return self._store.nearest(vector, limit, None, pictures, partition=term)
        within = self.share({facet: [keyword]})
        size = max(1, round(within * self._records))
        return self._filtered(
            vector, limit, within_rest, pictures, term, share / within if within else 0.0, size
        )

    def _partition_term(self, where: Filters, pictures: bool) -> tuple[str, str] | None:
        """The required term with the fewest records among those with a partition."""
        partitioned = self._store.partitioned(pictures)
        terms = [(f, w) for f, w in where.required if f in partitioned]
        if not terms:
            return None
        return min(terms, key=lambda t: self.share({t[0]: [t[1]]}))

    def _filtered(
        self,
        vector: Sequence[float],
        limit: int,
        where: Filters,
        pictures: bool,
        partition: tuple[str, str] | None,
        share: float,
        records: int,
    ) -> list[Neighbour]:
        """Over-fetch and filter while that is cheaper than Chroma's scan, else pre-filter."""
        parted = partition is not None
        fetch = self.over_fetch(limit, share, records, parted)
        while fetch is not None:
            self.last_plan.append(f"over-fetch {fetch}")
            near = self._store.nearest(vector, fetch, None, pictures, partition)
            kept = [n for n in near if matches(n.keywords, where)]
            if len(kept) >= limit or len(near) < fetch:  # enough, or nothing more to read
                return kept[:limit]
            # Matches are rarer near this query than in the catalog (keywords follow the
            # vectors: few summer clothes lie near "wool coat"). Plan again from the share
            # seen here, and pre-filter as soon as that is cheaper, instead of widening blind.
            seen = (len(kept) + 1) / (len(near) + 2)
            wider = self.over_fetch(limit, seen, records, parted)
            fetch = (
                None if wider is None else self._affordable(max(wider, 2 * fetch), records, parted)
            )
        self.last_plan.append("pre-filter")
        return self._store.nearest(vector, limit, where, pictures, partition, whole=True)
