"""`indexer check`: the store's invariants, verified and, where the data allows, repaired.

What every search relies on:
- a record's filter keys (`kw_<facet>`) are its keywords (`keywords_json`);
- an image vector belongs to a record and carries that record's keywords (`ikw_<facet>`),
  and every record has one where the catalog keeps image vectors;
- a keyword partition of a complete facet holds exactly the records that have its keyword,
  each with the record's vector and keywords; no record is left flagged half-partitioned;
- every collection bearing one of the catalog's names is marked as its own, and every
  collection marked as its own is one it uses;
- every batch job in the log has a name (an unnamed one is an intent a crash left).

Everything is read before anything is repaired, so that repairs never shift the pages being
read. Repairs rewrite derived data from the records (keys, image-vector keys, partitions) or
delete what no record accounts for; a record itself is never changed beyond its filter keys,
and a collection not marked as the catalog's is never touched.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from indexer.store import layout, partitions, schema
from indexer.store.connection import chunks, pages

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from indexer.store.batches import BatchLog
    from indexer.store.partitions import Partitions

Progress = Callable[[str, int], None]  # stage, items read so far
SAMPLE = 10  # ids shown per finding
_PAGE = 1_000


@dataclass
class Finding:
    kind: str
    collection: str
    ids: list[str]
    detail: str
    repairable: bool
    repaired: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "collection": self.collection,
            "count": len(self.ids),
            "ids": self.ids[:SAMPLE],
            "detail": self.detail,
            "repairable": self.repairable,
            "repaired": self.repaired,
        }


@dataclass
class Report:
    collection: str
    location: str
    records: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        """Nothing wrong is left (every finding, if any, was repaired)."""
        return all(f.repaired for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "location": self.location,
            "records": self.records,
            "sound": self.sound,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass
class Parts:
    """What the check needs of one ImageStore: its collections and partitions."""

    client: ClientAPI
    catalog: str
    records: Collection
    visual: Collection | None
    parts: Partitions | None
    visual_parts: Partitions | None
    image_prefix: str
    batches: BatchLog


def _norm(keywords: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {f: sorted(set(w)) for f, w in keywords.items() if w}


def _key_update(
    stored: Mapping[str, Sequence[str]], wanted: Mapping[str, Sequence[str]], prefix: str
) -> dict[str, Any]:
    """The metadata update that makes `prefix` keys say `wanted` (None deletes a key)."""
    update: dict[str, Any] = {f"{prefix}{f}": None for f in stored if f not in wanted}
    update.update({f"{prefix}{f}": list(w) for f, w in wanted.items()})
    return update


def _rewrite_keys(
    collection: Collection,
    wrong: Mapping[str, tuple[dict[str, list[str]], dict[str, list[str]]]],
    prefix: str,
) -> None:
    """Make each listed entry's `prefix` keys say its wanted keywords: id -> (stored, wanted)."""
    for chunk in chunks(list(wrong)):
        updates = [_key_update(*wrong[i], prefix) for i in chunk]
        collection.update(ids=list(chunk), metadatas=updates)


def verify(store: Parts, location: str, repair: bool, progress: Progress) -> Report:
    report = Report(store.catalog, location)
    keywords = _records(store, report, repair, progress)
    pictured = _image_vectors(store, keywords, report, repair, progress)
    for parts, source, only in (
        (store.parts, store.records, None),
        (store.visual_parts, store.visual, pictured),
    ):
        if parts is not None and source is not None:
            _partitions(store.client, parts, source, keywords, only, report, repair, progress)
    half = next((f for f in report.findings if f.kind == "half-partitioned"), None)
    if half is not None and repair and store.parts is not None:
        # The partition check has put these records where their keywords say.
        for chunk in chunks(half.ids):
            store.records.update(
                ids=list(chunk),
                metadatas=[{schema.PARTS_PENDING: None}] * len(chunk),
            )
        half.repaired = True
    _collections(store, report, repair)
    unnamed = [e.display_name for e in store.batches.entries() if not e.job]
    if unnamed:
        report.findings.append(
            Finding(
                "unnamed-batch-job",
                store.batches.name,
                unnamed,
                "batch jobs recorded as being created, or whose create was refused; the next "
                "`indexer run --batch` finds them by name in the account, or sends again (or, "
                "for a description job, forgets) those that were never created",
                repairable=False,
            )
        )
    return report


def _records(
    store: Parts, report: Report, repair: bool, progress: Progress
) -> dict[str, dict[str, list[str]]]:
    """Every record's keywords; findings on its filter keys and partition flag."""
    keywords: dict[str, dict[str, list[str]]] = {}
    disagree: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]] = {}
    pending: list[str] = []
    for page in pages(store.records, ["metadatas"]):
        for rid, meta in zip(page["ids"], page["metadatas"] or [], strict=True):
            meta = meta or {}
            words = _norm(schema.keywords_of(meta))
            keys = _norm(schema.filter_keywords(meta))
            keywords[rid] = words
            if words != keys:
                disagree[rid] = (keys, words)
            if meta.get(schema.PARTS_PENDING):
                pending.append(rid)
        progress("records", len(keywords))
    report.records = len(keywords)
    if disagree:
        finding = Finding(
            "filter-keys",
            store.records.name,
            list(disagree),
            "records whose filter keys differ from their keywords",
            repairable=True,
        )
        if repair:
            _rewrite_keys(store.records, disagree, schema.FACET_PREFIX)
            finding.repaired = True
        report.findings.append(finding)
    if pending:
        # The partition check below rewrites what these records' partitions lack.
        finding = Finding(
            "half-partitioned",
            store.records.name,
            pending,
            "records a crash left between their write and their partitions' write",
            repairable=store.parts is not None,
        )
        report.findings.append(finding)
    return keywords


def _image_vectors(
    store: Parts,
    keywords: Mapping[str, Mapping[str, Sequence[str]]],
    report: Report,
    repair: bool,
    progress: Progress,
) -> set[str]:
    """The ids that have an image vector; findings on orphans, keys and missing vectors."""
    if store.visual is None:
        return set()
    seen: set[str] = set()
    orphans: list[str] = []
    stale: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]] = {}
    for page in pages(store.visual, ["metadatas"]):
        for rid, meta in zip(page["ids"], page["metadatas"] or [], strict=True):
            seen.add(rid)
            if rid not in keywords:
                orphans.append(rid)
                continue
            keys = _norm(schema.filter_keywords(meta or {}, store.image_prefix))
            if keys != keywords[rid]:
                stale[rid] = (keys, {f: list(v) for f, v in keywords[rid].items()})
        progress("image vectors", len(seen))
    name = store.visual.name
    if orphans:
        finding = Finding(
            "orphan-image-vector", name, orphans, "image vectors of no record", repairable=True
        )
        if repair:
            for chunk in chunks(orphans):
                store.visual.delete(ids=list(chunk))
            finding.repaired = True
        report.findings.append(finding)
    if stale:
        finding = Finding(
            "image-vector-keys",
            name,
            list(stale),
            "image vectors whose keywords differ from their record's",
            repairable=True,
        )
        if repair:
            _rewrite_keys(store.visual, stale, store.image_prefix)
            finding.repaired = True
        report.findings.append(finding)
    missing = [rid for rid in keywords if rid not in seen]
    if missing:
        report.findings.append(
            Finding(
                "missing-image-vector",
                name,
                missing,
                "records without an image vector; `indexer reembed` computes them again",
                repairable=False,
            )
        )
    return seen - set(orphans)


def _partitions(
    client: ClientAPI,
    parts: Partitions,
    source: Collection,
    keywords: Mapping[str, Mapping[str, Sequence[str]]],
    only: set[str] | None,
    report: Report,
    repair: bool,
    progress: Progress,
) -> None:
    """Each partition against the records that have its keyword."""
    expected: dict[str, set[str]] = defaultdict(set)
    for rid, words in keywords.items():
        if only is not None and rid not in only:
            continue  # no image vector: in no partition of the image vectors
        for facet in parts.facets:
            for word in words.get(facet, ()):
                expected[partitions.partition_name(parts.base, facet, word)].add(rid)
    extra: dict[str, list[str]] = {}
    rewrite: set[str] = set()
    existing = set(parts.own_names())
    read = 0
    for name in sorted(existing):
        collection = layout.find(client, name)
        if collection is None:
            continue
        want = expected.get(name, set())
        held: set[str] = set()
        for page in pages(collection, ["documents", "embeddings"]):
            ids = list(page["ids"])
            held.update(ids)
            vectors = _vectors(source, [i for i in ids if i in want])
            for i, rid in enumerate(ids):
                if rid not in want:
                    continue
                document = partitions.document(keywords[rid])
                same = vectors.get(rid) is not None and _close(page["embeddings"][i], vectors[rid])
                if page["documents"][i] != document or not same:
                    rewrite.add(rid)
            read += len(ids)
            progress(f"partitions of {parts.base}", read)
        if held - want:
            extra[name] = sorted(held - want)
        rewrite.update(want - held)
    for name in set(expected) - existing:
        rewrite.update(expected[name])
    if extra:
        finding = Finding(
            "partition-extra",
            parts.base,
            [i for ids in extra.values() for i in ids],
            f"entries in {len(extra)} partition(s) of records without that keyword",
            repairable=True,
        )
        if repair:
            for name, ids in extra.items():
                collection = layout.find(client, name)
                for chunk in chunks(ids):
                    if collection is not None:
                        collection.delete(ids=list(chunk))
            finding.repaired = True
        report.findings.append(finding)
    if rewrite:
        finding = Finding(
            "partition-missing",
            parts.base,
            sorted(rewrite),
            "records missing from their keywords' partitions, or there with another vector "
            "or other keywords",
            repairable=True,
        )
        if repair:
            for chunk in chunks(sorted(rewrite)):
                vectors = _vectors(source, chunk)
                ids = [i for i in chunk if i in vectors]
                parts.write(ids, [vectors[i] for i in ids], [keywords[i] for i in ids])
            finding.repaired = True
        report.findings.append(finding)


def _vectors(source: Collection, ids: Sequence[str]) -> dict[str, list[float]]:
    if not ids:
        return {}
    got = source.get(ids=list(ids), include=["embeddings"])
    return {rid: list(v) for rid, v in zip(got["ids"], got["embeddings"], strict=True)}


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def _collections(store: Parts, report: Report, repair: bool) -> None:
    """Collections that bear the catalog's names but are not its own, and collections
    marked as its own that it does not use."""
    catalog = store.catalog
    known = {catalog, *layout.siblings(catalog)}
    used = set(store.parts.own_names() if store.parts else ())
    used |= set(store.visual_parts.own_names() if store.visual_parts else ())
    partition_bases = (catalog + layout.PARTITION_INFIX, f"{catalog}-{layout.IMAGES}--kw--")
    foreign: list[str] = []
    unused: list[str] = []
    for collection in store.client.list_collections():
        name, owner = collection.name, layout.owner_of(collection.metadata)
        named = name in known or name.startswith(partition_bases)
        if named and owner != catalog:
            foreign.append(name)
        elif owner == catalog and name.startswith(partition_bases) and name not in used:
            unused.append(name)
    if foreign:
        report.findings.append(
            Finding(
                "foreign-collection",
                catalog,
                foreign,
                "collections named like this catalog's that are not marked as its own; "
                "never deleted by this tool (rename the catalog, or remove them yourself)",
                repairable=False,
            )
        )
    if unused:
        finding = Finding(
            "unused-partition",
            catalog,
            unused,
            "partitions of facets not partitioned (or not complete)",
            repairable=True,
        )
        if repair:
            for name in unused:
                layout.drop(store.client, name, catalog)
            finding.repaired = True
        report.findings.append(finding)
