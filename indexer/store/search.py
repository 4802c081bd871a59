"""Nearest-neighbour search over a catalog: by caption vector or image vector, filtered by
keywords in Chroma or within one keyword's partition, each hit checked against its
record's own keywords before it is returned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from indexer.records import Found, Neighbour, StoredRecord
from indexer.store import partitions, schema
from indexer.store.connection import store_errors
from indexer.store.reader import StoreReader
from indexer.vocabulary import FilterLike, Filters, Keywords, matches

FACET_PREFIX = schema.FACET_PREFIX


def where_clause(filters: FilterLike, prefix: str = FACET_PREFIX) -> dict[str, Any] | None:
    """Chroma filter for "each facet contains each of its required keywords and none of its
    excluded ones", ANDed (a record without the facet's key contains none)."""
    given = Filters.of(filters)
    terms = [{f"{prefix}{facet}": {"$contains": word}} for facet, word in given.required]
    terms += [{f"{prefix}{facet}": {"$not_contains": word}} for facet, word in given.excluded]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"$and": terms}


def _satisfies(record: StoredRecord, where: FilterLike) -> bool:
    """The record's own filter keys, the ones a pre-filtered search reads, satisfy `where`."""
    return not where or matches(schema.filter_keywords(record.metadata), where)


class StoreSearch(StoreReader):
    """A store's searches (store/reader.py holds its state)."""

    @store_errors
    def nearest(
        self,
        vector: Sequence[float],
        k: int,
        where: FilterLike = None,
        pictures: bool = False,
        partition: tuple[str, str] | None = None,
        whole: bool = False,
    ) -> list[Neighbour]:
        """The `k` nearest records by caption vector (or, with `pictures`, by image vector),
        filtered in Chroma when `where` is given; within the records that have keyword
        `partition` (facet, keyword) when given, from that keyword's partition. Each with its
        keywords, for a planner that filters over-fetched results itself; and, with `whole`,
        when these are the answer, the record itself where the searched collection holds it
        (the main one), which saves `answer` a second read (a round trip on a server)."""
        collection = self._visual if pictures else self._collection
        prefix = self._image_prefix if pictures else FACET_PREFIX
        if partition is not None:
            parts = self._visual_parts if pictures else self._parts
            if parts is None or partition[0] not in parts.facets:
                raise ValueError(f"facet {partition[0]!r} is not partitioned")
            collection = parts.collection(*partition)  # None: no record has that keyword
            prefix = partitions.key_prefix(collection.name) if collection is not None else prefix
        if collection is None:
            return []
        # A partition's keywords are read from its documents, a fraction of the metadata's
        # cost (partitions.py); the main collection's from its filter keys.
        whole = whole and collection is self._collection
        found = collection.query(
            query_embeddings=[list(vector)],
            n_results=max(1, k),
            where=where_clause(where, prefix),
            include=[
                *(["documents"] if partition or whole else []),
                *(["metadatas"] if not partition else []),
                "distances",
            ],
        )
        ids, scores = found["ids"][0], [1.0 - float(d) for d in (found["distances"] or [[]])[0]]
        docs = (found["documents"] or [[]])[0] if partition or whole else [None] * len(ids)
        if partition is not None:
            return [
                Neighbour(rid, score, partitions.keywords_of_document(doc))
                for rid, score, doc in zip(ids, scores, docs, strict=True)
            ]
        metas = (found["metadatas"] or [[]])[0]
        return [
            Neighbour(
                rid,
                score,
                schema.filter_keywords(meta or {}, prefix),
                schema.stored(rid, meta or {}, doc) if whole else None,
            )
            for rid, score, meta, doc in zip(ids, scores, metas, docs, strict=True)
        ]

    def query(
        self,
        vector: Sequence[float],
        where: FilterLike,
        limit: int,
        pictures: bool = False,
    ) -> list[Found]:
        """The `limit` nearest records under `where`, filtered by Chroma (no planning: the
        query client plans through query/planner.py)."""
        return self.answer(self.nearest(vector, limit, where, pictures, whole=True), where)

    def candidates(
        self,
        text_vector: Sequence[float],
        image_vector: Sequence[float],
        where: FilterLike,
        k: int,
    ) -> list[StoredRecord]:
        """The `k` nearest of each route, with both vectors, for the query side's fused ranking."""
        ids = dict.fromkeys(
            n.id
            for vector, pictures in ((text_vector, False), (image_vector, True))
            for n in self.nearest(vector, k, where, pictures)
        )
        return self.with_vectors(list(ids), where)

    @store_errors
    def answer(self, neighbours: Sequence[Neighbour], where: FilterLike = None) -> list[Found]:
        """The records of a search's neighbours, in order: from the records read with them, and
        the others read now. Left out: ids without a record (an image vector whose record a
        crash never wrote), and records whose own keywords do not satisfy `where` (an image
        vector or partition entry written before a crash stopped its record's update)."""
        missing = [n.id for n in neighbours if n.record is None]
        found = {r.id: r for r in self.by_ids(missing)} if missing else {}
        out = []
        for n in neighbours:
            record = n.record or found.get(n.id)
            if record is not None and _satisfies(record, where):
                out.append(Found(record, n.score))
        return out

    @store_errors
    def with_vectors(self, ids: Sequence[str], where: FilterLike = None) -> list[StoredRecord]:
        """Records with their caption and image vectors, for fused ranking; those whose own
        keywords do not satisfy `where` left out (see `answer`)."""
        if not ids:
            return []
        got = self._collection.get(ids=list(ids), include=["embeddings", "metadatas", "documents"])
        return [r for r in self._with_pictures(got, vectors=True) if _satisfies(r, where)]

    @store_errors
    def sample_keywords(self, size: int, blocks: int = 8) -> list[Keywords]:
        """Keywords of about `size` records taken from `blocks` places spread over the
        collection (records lie in insertion order, often folder by folder)."""
        total = self._collection.count()
        if total == 0:
            return []
        per_block = max(1, size // blocks)
        step = max(per_block, total // blocks)
        out: list[Keywords] = []
        for offset in range(0, total, step):
            got = self._collection.get(limit=per_block, offset=offset, include=["metadatas"])
            out.extend(schema.filter_keywords(m or {}) for m in got["metadatas"] or [])
        return out
