"""Keyword partitions: each record's vector also kept in one small collection per keyword of
the facets shops filter on, so that a filter is an unfiltered search of a small collection.

Chroma answers a filtered query by gathering every matching id from its metadata store and
handing the allow-list to HNSW: 0.6 to 1 us a record whatever the filter matches (60 to
100 ms at 100,000 records, up to a second at a million), while an unfiltered HNSW search
takes milliseconds. With `garment` partitioned, `garment=dress` is an unfiltered search of
`<name>--kw--garment--dress-<hash>`; other terms are filtered within it, where the scan is
small. The cost is a copy of each vector per partitioned facet (about 3x the vector storage
with two facets), and a few more writes per batch.

A partition holds the record's vector and its keywords twice: as list-valued keys of its own
(`key_prefix`), which Chroma filters on, and as one compact JSON document, which a planner
reads for every over-fetched neighbour: reading a document is one row where the keys are one
per facet (a 40,000-record collection, same search width: 830 neighbours in 11.8 ms with the
document, 27.5 ms with six list keys; 2,000 in 23.6 against 73.8 ms). The main collection's
metadata names the facets whose partitions are complete (`partitions`); readers use only
those. Writers keep every configured facet's partitions, and build the missing ones from the
main collection when they open it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from indexer.records import EmbeddingSpec, ImageRecord
from indexer.store import layout, schema
from indexer.store.connection import chunks, fresh_metadata, pages

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

INFIX = layout.PARTITION_INFIX
COMPLETE = layout.COMPLETE


def _slug(text: str) -> str:
    # Bounded: Chroma names are 3-512 characters, and the hash beside it keeps names apart.
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-") or "k"


def _facet_prefix(base: str, facet: str) -> str:
    # The facet's own hash: "color" and "color_" slug alike, and dropping one facet's
    # partitions by this prefix must not take the other's.
    digest = hashlib.sha256(facet.encode()).hexdigest()[:4]
    return f"{base}{INFIX}{_slug(facet)}-{digest}--"


def partition_name(base: str, facet: str, keyword: str) -> str:
    """A Chroma-safe collection name for one keyword's partition of `base`. The hash keeps
    "tank top" and "tank-top" apart."""
    digest = hashlib.sha256(f"{facet}\0{keyword}".encode()).hexdigest()[:6]
    return f"{_facet_prefix(base, facet)}{_slug(keyword)}-{digest}"


def key_prefix(name: str) -> str:
    """The metadata key prefix of partition `name`, its own: Chroma's embedded metadata
    filter looks a key up across every collection of the database, so `kw_season` in the
    partitions would make each filter on `kw_season` scan them all (measured: a filter on
    3,000 records took 11.7 ms beside a 100,000-record collection sharing its key, 3.1 ms
    with a key of its own)."""
    return f"p{hashlib.sha256(name.encode()).hexdigest()[:8]}_"


def complete_facets(meta: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(f for f in str(meta.get(COMPLETE, "")).split(",") if f)


class Partitions:
    """The keyword partitions of one collection (the records, or their image vectors)."""

    def __init__(
        self,
        client: ClientAPI,
        base: str,
        spec: EmbeddingSpec,
        facets: Sequence[str],
        catalog: str,
    ) -> None:
        self._client = client
        self.base = base
        self.catalog = catalog
        self.spec = spec
        self.facets = tuple(facets)
        self._opened: dict[str, Collection] = {}

    def _get(self, name: str, create: bool) -> Collection | None:
        from chromadb.errors import NotFoundError

        if name in self._opened:
            return self._opened[name]
        try:
            found = self._client.get_collection(name, embedding_function=None)
        except NotFoundError:
            if not create:
                return None
            found = schema.vector_collection(self._client, name, self.spec, self.catalog)
        self._opened[name] = found
        return found

    def collection(self, facet: str, keyword: str) -> Collection | None:
        """The partition to search for facet=keyword; None when no record has that keyword."""
        return self._get(partition_name(self.base, facet, keyword), create=False)

    def names(self) -> list[str]:
        """Every partition collection of `base` that exists, whatever its facet."""
        return layout.partition_names(self._client, self.base)

    def own_names(self) -> list[str]:
        """The partition collections of this object's facets that exist."""
        prefixes = tuple(_facet_prefix(self.base, f) for f in self.facets)
        return [n for n in self.names() if n.startswith(prefixes)] if prefixes else []

    def write(
        self,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        keywords: Sequence[Mapping[str, Sequence[str]]],
        before: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    ) -> None:
        """Put each record in the partition of each keyword it has, and take it out of those
        of keywords it had `before` (the stored record's keywords) and has no more."""
        adds: dict[str, list[int]] = defaultdict(list)
        removes: dict[str, list[str]] = defaultdict(list)
        for row, (rid, words) in enumerate(zip(ids, keywords, strict=True)):
            for facet in self.facets:
                now_in = set(words.get(facet, ()))
                for word in now_in:
                    adds[partition_name(self.base, facet, word)].append(row)
                for word in set((before or {}).get(rid, {}).get(facet, ())) - now_in:
                    removes[partition_name(self.base, facet, word)].append(rid)
        for name, gone in removes.items():
            found = self._get(name, create=False)
            if found is not None:
                for chunk in chunks(gone):
                    found.delete(ids=list(chunk))
        for name, rows in adds.items():
            target = self._get(name, create=True)
            assert target is not None
            prefix = key_prefix(name)
            for part in chunks(rows):
                target.upsert(
                    ids=[ids[r] for r in part],
                    embeddings=[list(vectors[r]) for r in part],
                    metadatas=[_lean(keywords[r], prefix) for r in part],
                    documents=[document(keywords[r]) for r in part],
                )

    def remove(self, ids: Sequence[str]) -> None:
        """Take these records out of every partition."""
        for name in self.names():
            found = self._get(name, create=False)
            if found is not None:
                for chunk in chunks(list(ids)):
                    found.delete(ids=list(chunk))

    def drop(self, facets: Sequence[str] | None = None) -> None:
        """Delete the partitions of `facets` (all when None)."""
        prefixes = tuple(_facet_prefix(self.base, f) for f in facets or ())
        for name in self.names():
            if facets is None or name.startswith(prefixes):
                layout.drop(self._client, name, self.catalog)
                self._opened.pop(name, None)


def _lean(keywords: Mapping[str, Sequence[str]], prefix: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        f"{prefix}{facet}": list(words) for facet, words in keywords.items() if words
    }
    return meta or {"_": 0}  # Chroma wants metadata on every record when some have it


def document(keywords: Mapping[str, Sequence[str]]) -> str:
    """A partition record's keywords as its document."""
    return json.dumps({f: list(w) for f, w in sorted(keywords.items()) if w}, separators=(",", ":"))


def keywords_of_document(text: str | None) -> dict[str, list[str]]:
    """The keywords a partition document holds; none when it holds no such object (a record
    that then matches no filter term, rather than a failed search)."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(f): [w for w in words if isinstance(w, str)]
        for f, words in data.items()
        if isinstance(words, list)
    }


def mark_complete(client: ClientAPI, name: str, facets: Sequence[str]) -> None:
    meta = fresh_metadata(client, name)
    client.get_collection(name, embedding_function=None).modify(
        metadata={**meta, COMPLETE: ",".join(sorted(facets))}
    )


def build(
    records: Collection, partitions: Partitions, prefix: str = schema.FACET_PREFIX, page: int = 1000
) -> int:
    """Fill `partitions` from every record of `records` (their vectors and keyword keys, named
    with `prefix`). Idempotent; returns how many records it wrote."""
    written = 0
    for got in pages(records, ["metadatas", "embeddings"], page):
        ids = list(got["ids"])
        if ids:
            keywords = [schema.filter_keywords(m or {}, prefix) for m in got["metadatas"] or []]
            partitions.write(ids, [list(v) for v in got["embeddings"]], keywords)
            written += len(ids)
    return written


def write_records(
    parts: Partitions,
    visual_parts: Partitions | None,
    records: Sequence[ImageRecord],
    before: Mapping[str, Mapping[str, Sequence[str]]] | None,
) -> None:
    """Partition written records by caption vector, and by image vector where they have
    one; `before` holds the keywords they had, whose partitions they leave."""
    ids = [r.id for r in records]
    parts.write(ids, [r.embedding for r in records], [r.keywords for r in records], before)
    pictured = [(r, r.image_embedding) for r in records if r.image_embedding is not None]
    if visual_parts is not None and pictured:
        visual_parts.write(
            [r.id for r, _ in pictured],
            [vector for _, vector in pictured],
            [r.keywords for r, _ in pictured],
            before,
        )


def finish_pending(
    records: Collection,
    visual: Collection | None,
    parts: Partitions | None,
    visual_parts: Partitions | None,
) -> int:
    """Partition the records a crash left flagged `PARTS_PENDING`: out of every partition,
    then into those of their keywords. Returns how many."""
    if parts is None:
        return 0
    got = records.get(where={schema.PARTS_PENDING: True}, include=["metadatas", "embeddings"])
    ids = list(got["ids"])
    if not ids:
        return 0
    pictures: dict[str, Any] = {}
    if visual is not None:
        found = visual.get(ids=ids, include=["embeddings"])
        pictures = dict(zip(found["ids"], found["embeddings"], strict=True))
    for each in (parts, visual_parts):
        if each is not None:
            each.remove(ids)
    metas = got["metadatas"] or []
    parts.write(
        ids, [list(v) for v in got["embeddings"]], [schema.filter_keywords(m or {}) for m in metas]
    )
    if visual_parts is not None:
        kept = [(i, m) for i, m in zip(ids, metas, strict=True) if i in pictures]
        visual_parts.write(
            [i for i, _ in kept],
            [list(pictures[i]) for i, _ in kept],
            [schema.filter_keywords(m or {}) for _, m in kept],
        )
    records.update(ids=ids, metadatas=[{schema.PARTS_PENDING: None}] * len(ids))
    log.warning("finished partitioning %d records a crash left half-written", len(ids))
    return len(ids)
