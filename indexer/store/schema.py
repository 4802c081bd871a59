"""What a record looks like in Chroma, and how older collections are brought up to date.

A record's metadata: `path`; `folders`, every folder above the path (so that everything under
a folder is found by one filter); `kw_<facet>` keyword lists (filtered with `$contains`); the
keywords, the model's raw keywords and the corrections made as JSON (for audit); model ids,
vocabulary fingerprint and time. The collection's own metadata records the embedding spec and
the schema version. An image vector (in `<name>-images`) carries only the vocabulary
fingerprint and `ikw_<facet>` keyword lists.

Migrations: each `Migration` names the schema version it upgrades to and what it does. Each
step is idempotent, and the version is written only after its step completed, so a crash
mid-way leaves the old version recorded and the next open simply runs the step again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from indexer.errors import StoreError
from indexer.records import EmbeddingSpec, ImageRecord, StoredRecord
from indexer.store import keys, layout
from indexer.store.connection import ID_CHUNK, now, pages
from indexer.vocabulary import Keywords

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

# The keys (store/keys.py) the rest of the code reads through the schema.
FACET_PREFIX = keys.FACET_PREFIX
IMAGE_FACET_PREFIX = keys.IMAGE_FACET_PREFIX
FOLDERS = keys.FOLDERS
PARTS_PENDING = keys.PARTS_PENDING
# Chroma's default ef_search (100) gave recall@10 0.84 at 200,000 near-duplicate records, 200
# gave 0.94, 800 gives 0.99 for 2.4 ms more per search (measured on the bench's catalog). At
# 1,000,000 records 800 gave 0.93 and 3,000 gave 0.99 at 17.8 ms p50; 3,000 at 200,000 would
# cost small catalogs latency they need not pay, so the wider search starts at LARGE_CATALOG.
SEARCH_EF = 800
LARGE_SEARCH_EF = 3_000
LARGE_CATALOG = 500_000
COSINE = {"hnsw": {"space": "cosine", "ef_search": SEARCH_EF}}


def folders_of(path: str, *more: str) -> list[str]:
    """Every folder that contains `path` (or any of `more`), nearest first:
    "/a/b/c.jpg" -> ["/a/b", "/a", "/"]."""
    found = [str(p) for p in PurePath(path).parents]
    for other in more:
        found += [str(p) for p in PurePath(other).parents if str(p) not in found]
    return found


def filter_metadata(record: ImageRecord, prefix: str = FACET_PREFIX) -> dict[str, Any]:
    """What a query filters on: the vocabulary and the keywords per facet."""
    meta: dict[str, Any] = {keys.VOCABULARY: record.vocabulary}
    for facet, words in record.keywords.items():
        if words:  # Chroma refuses empty lists; a missing key filters the same way
            meta[f"{prefix}{facet}"] = list(words)
    return meta


def record_metadata(record: ImageRecord, indexed_at: str) -> dict[str, Any]:
    return {
        keys.PATH: record.path,
        FOLDERS: folders_of(record.path, *record.copies),
        keys.KEYWORDS_JSON: json.dumps(record.keywords),
        keys.RAW_KEYWORDS_JSON: json.dumps(record.raw_keywords),
        keys.CORRECTIONS_JSON: json.dumps(dict(record.corrections)),
        keys.INDEXED_AT: indexed_at,
        **({keys.SIZE: record.size, keys.MTIME_NS: record.mtime_ns} if record.size else {}),
        **({keys.LIKENESS: record.likeness} if record.likeness else {}),
        **({keys.COPIES: list(record.copies)} if record.copies else {}),
        **record.model_ids,
        **filter_metadata(record),
    }


def write(
    records: Collection,
    visual: Collection | None,
    batch: Sequence[ImageRecord],
    indexed_at: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Upsert complete records (with `extra` metadata), and their image vectors."""
    if len(batch) > ID_CHUNK:  # within a write's record limit (connection.py)
        for start in range(0, len(batch), ID_CHUNK):
            end = start + ID_CHUNK
            write(records, visual, batch[start:end], indexed_at[start:end], extra)
        return
    pictured = [r for r in batch if r.image_embedding is not None]
    if pictured and visual is not None:
        # Image vectors first: the main record is what marks an image as indexed, so a crash
        # in between leaves it pending (and redone), never half-indexed.
        visual.upsert(
            ids=[r.id for r in pictured],
            embeddings=[r.image_embedding for r in pictured],
            metadatas=[filter_metadata(r, IMAGE_FACET_PREFIX) for r in pictured],
        )
    records.upsert(
        ids=[r.id for r in batch],
        embeddings=[r.embedding for r in batch],
        documents=[r.caption for r in batch],
        metadatas=[
            {**record_metadata(r, at), **(extra or {})}
            for r, at in zip(batch, indexed_at, strict=True)
        ],
    )


def stored(
    rid: str,
    meta: Mapping[str, Any] | None,
    document: str | None,
    embedding: Sequence[float] | None = None,
    image_embedding: Sequence[float] | None = None,
) -> StoredRecord:
    meta = meta or {}
    return StoredRecord(
        id=rid,
        path=str(meta.get(keys.PATH, "")),
        caption=document or "",
        keywords=keywords_of(meta),
        metadata=dict(meta),
        embedding=[float(x) for x in embedding] if embedding is not None else None,
        image_embedding=[float(x) for x in image_embedding]
        if image_embedding is not None
        else None,
    )


def filter_keywords(meta: Mapping[str, Any], prefix: str = FACET_PREFIX) -> Keywords:
    """The filterable keyword lists (`<prefix><facet>`) of a record's metadata."""
    return {
        k[len(prefix) :]: list(v)
        for k, v in meta.items()
        if k.startswith(prefix) and isinstance(v, list)
    }


def keywords_of(meta: Mapping[str, Any]) -> Keywords:
    raw = meta.get(keys.KEYWORDS_JSON)
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
            if isinstance(data, dict):
                return {k: list(v) for k, v in data.items()}
        except ValueError:
            log.warning("record has unreadable keywords_json; using filter keys")
    return filter_keywords(meta)


def spec_metadata(spec: EmbeddingSpec, created_at: str) -> dict[str, Any]:
    return {
        keys.EMBEDDING_PROVIDER: spec.provider,
        keys.EMBEDDING_MODEL: spec.model,
        keys.EMBEDDING_DIM: spec.dim,
        keys.VERSION: SCHEMA_VERSION,
        keys.CREATED_AT: created_at,
    }


def vector_collection(
    client: ClientAPI,
    name: str,
    spec: EmbeddingSpec,
    catalog: str,
    extra: Mapping[str, Any] | None = None,
) -> Collection:
    """Collection `name` of `catalog`, created if missing: the cosine space with this
    schema's search width, its vector space and owner recorded. Every collection of vectors
    the store makes is made here, so none is left in Chroma's default (L2) space."""
    return client.get_or_create_collection(
        name,
        configuration=COSINE,
        metadata={**spec_metadata(spec, now()), **(extra or {}), **layout.mark(catalog)},
        embedding_function=None,
    )


def spec_of(meta: Mapping[str, Any]) -> EmbeddingSpec:
    return EmbeddingSpec(
        str(meta.get(keys.EMBEDDING_PROVIDER, "?")),
        str(meta.get(keys.EMBEDDING_MODEL, "?")),
        int(meta.get(keys.EMBEDDING_DIM, 0)),
    )


def version_of(meta: Mapping[str, Any]) -> int:
    return int(meta.get(keys.VERSION, 1))


# --- migrations ---


def _add_folders(client: ClientAPI, records: Collection) -> None:
    """1 -> 2: give every record its `folders` list, so that the records under a folder are
    found by a filter instead of a scan of the whole collection. Records that have it keep it,
    so a re-run after a crash only finishes the rest."""
    for got in pages(records, ["metadatas"]):
        ids, metas = list(got["ids"]), list(got["metadatas"] or [])
        missing = [(i, m) for i, m in zip(ids, metas, strict=True) if m and FOLDERS not in m]
        if missing:
            records.update(
                ids=[i for i, _ in missing],
                metadatas=[{FOLDERS: folders_of(str(m.get(keys.PATH, "")))} for _, m in missing],
            )


def _mark_partitioned(client: ClientAPI, records: Collection) -> None:
    """2 -> 3: nothing to rewrite. Version 3 collections may keep keyword partitions
    (store/partitions.py) that every write must keep up to date, so a tool older than this
    one, which would not, must refuse to write to them."""


def _rebuild_partitions(client: ClientAPI, records: Collection) -> None:
    """3 -> 4: partition records now carry their keywords as a document too, which searches
    read instead of the metadata (in a schema-3 partition every over-fetch would see no
    match and fall back to Chroma's scan). Forget which facets were partitioned, so that no
    reader uses the old ones and the next writer rebuilds them."""
    meta = dict(records.metadata or {})
    if meta.pop(layout.COMPLETE, None) is not None:
        records.modify(metadata=meta)


def _own_image_keys(client: ClientAPI, records: Collection) -> None:
    """4 -> 5: the image vectors' keyword keys become `ikw_`, the records' own `kw_` (a
    filter on the records read both collections' entries). Records already moved are
    skipped, so a re-run after a crash finishes the rest."""
    from chromadb.errors import NotFoundError

    try:
        visual = client.get_collection(f"{records.name}-images", embedding_function=None)
    except NotFoundError:
        return
    for got in pages(visual, ["metadatas"]):
        ids, metas = list(got["ids"]), list(got["metadatas"] or [])
        moves = [(i, u) for i, m in zip(ids, metas, strict=True) if (u := _image_keys(m or {}))]
        if moves:
            # A key set to None is deleted by Chroma's update.
            visual.update(ids=[i for i, _ in moves], metadatas=[m for _, m in moves])


def _image_keys(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The update that moves one image vector's `kw_` keys to `ikw_`; empty when moved."""
    old = {k: v for k, v in meta.items() if k.startswith(FACET_PREFIX)}
    return {
        **{f"{IMAGE_FACET_PREFIX}{k[len(FACET_PREFIX) :]}": v for k, v in old.items()},
        **dict.fromkeys(old),
    }


def _own_collections(client: ClientAPI, records: Collection) -> None:
    """5 -> 6: mark the catalog's collections as its own (store/layout.py), so that `reset`
    and every other drop touch nothing else; and drop the keyword partitions, whose names now
    carry their facet's hash, so that the next writer rebuilds them under the new names.

    A collection that bears a sibling's name but holds records with keywords is another
    catalog's (an older version let a catalog be called `shop-images`): it stays unmarked."""
    catalog = records.name
    for name in layout.siblings(catalog):
        found = layout.find(client, name)
        if found is None or layout.owner_of(found.metadata) is not None:
            continue
        sample = found.get(limit=1, include=["metadatas"])["metadatas"] or []
        staged = name.endswith((layout.NEXT, layout.RETIRED))
        if not staged and any(keys.KEYWORDS_JSON in (m or {}) for m in sample):
            log.warning("collection %r is another catalog's; not marked as %r's", name, catalog)
            continue
        found.modify(metadata={**(found.metadata or {}), **layout.mark(catalog)})
    for base in (catalog, f"{catalog}-{layout.IMAGES}"):
        prefix = base + layout.PARTITION_INFIX
        for name in [c.name for c in client.list_collections() if c.name.startswith(prefix)]:
            found = layout.find(client, name)
            if found is not None and layout.owner_of(found.metadata) is None:
                found.modify(metadata={**(found.metadata or {}), **layout.mark(catalog)})
                layout.drop(client, name, catalog)
    meta = dict(client.get_collection(catalog, embedding_function=None).metadata or {})
    meta.pop(layout.COMPLETE, None)
    records.modify(metadata={**meta, **layout.mark(catalog)})


@dataclass(frozen=True)
class Migration:
    to: int  # the schema version it upgrades to, from the one before
    name: str
    step: Callable[[ClientAPI, Collection], None]


MIGRATIONS = (
    Migration(2, "folder index", _add_folders),
    Migration(3, "keyword partitions", _mark_partitioned),
    Migration(4, "partition keyword documents", _rebuild_partitions),
    Migration(5, "image vectors' own keyword keys", _own_image_keys),
    Migration(6, "collections marked as their catalog's", _own_collections),
)
SCHEMA_VERSION = MIGRATIONS[-1].to
# The first schema whose image vectors use IMAGE_FACET_PREFIX.
IMAGE_KEYS_SINCE = next(m.to for m in MIGRATIONS if m.step is _own_image_keys)
_BY_TARGET = {m.to: m for m in MIGRATIONS}
assert sorted(_BY_TARGET) == list(range(2, SCHEMA_VERSION + 1)), "a schema version is skipped"


def check_version(name: str, meta: Mapping[str, Any]) -> int:
    """The collection's schema version; a newer one than this code knows is refused."""
    version = version_of(meta)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"collection {name!r} was written by a newer version of this tool "
            f"(schema {version}, this one reads up to {SCHEMA_VERSION}); upgrade the tool"
        )
    return version


def search_ef(records: int) -> int:
    """The ef_search a catalog of `records` records needs for recall@10 of 0.98."""
    return LARGE_SEARCH_EF if records >= LARGE_CATALOG else SEARCH_EF


def widen_search(collection: Collection, ef: int) -> None:
    """Give a collection made with a smaller ef_search `ef`; Chroma keeps it in the
    collection's configuration, so it holds from the next time the index is loaded."""
    hnsw = (collection.configuration or {}).get("hnsw") or {}
    if hnsw.get("ef_search", ef) < ef:
        collection.modify(configuration={"hnsw": {"ef_search": ef}})


def upgrade(client: ClientAPI, name: str, siblings: Sequence[str] = ()) -> int:
    """Run the migrations collection `name` needs, in order; return how many ran.

    The sibling collections (image vectors) get their recorded version raised with it."""
    from chromadb.errors import NotFoundError

    records = client.get_collection(name, embedding_function=None)
    version = check_version(name, records.metadata or {})
    start = version
    while version < SCHEMA_VERSION:
        migration = _BY_TARGET[version + 1]
        log.info("upgrading collection %r to schema %d: %s", name, migration.to, migration.name)
        migration.step(client, records)
        version = migration.to
        for each in (*siblings, name):  # the main collection's version last
            try:
                collection = client.get_collection(each, embedding_function=None)
            except NotFoundError:
                continue
            collection.modify(metadata={**(collection.metadata or {}), keys.VERSION: version})
    return version - start
