"""Reading a catalog: the state every store holds, and records read back by id, path,
folder or page. `ImageStore` (store/store.py) adds opening, writing and upkeep on top; the
search in between lives in store/search.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from indexer.errors import EmbeddingMismatchError
from indexer.records import EmbeddingSpec, Listed, StoredRecord
from indexer.store import keys, layout, schema
from indexer.store.batches import BatchLog
from indexer.store.changes import ChangeMark
from indexer.store.connection import chunks, pages, store_errors
from indexer.store.dismissals import Dismissals
from indexer.store.failures import FailureLog
from indexer.store.guard import WriterGuard
from indexer.store.partitions import Partitions
from indexer.store.roots import RootList
from indexer.store.usage import UsageLog
from indexer.vocabulary import Keywords

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


class StoreReader:
    """Records and image vectors of one collection, read. Build one with `ImageStore.open`."""

    def __init__(
        self, client: ClientAPI, name: str, location: str, retry_seconds: float = 0.0
    ) -> None:
        self._client = client
        self.name = name
        self.location = location
        self.retry_seconds = retry_seconds  # how long to wait out an unreachable server
        self.failures = FailureLog(client, name, location, retry_seconds)
        self.roots = RootList(client, name, location, retry_seconds)
        self.usage = UsageLog(client, name, location, retry_seconds)
        self.changes = ChangeMark(client, name, location, retry_seconds)
        self.batches = BatchLog(client, name, location, retry_seconds)
        self.dismissals = Dismissals(client, name, location, retry_seconds)
        self._records: Collection | None = None
        self._visual: Collection | None = None  # "<name>-images": one image vector per record
        self._image_prefix = schema.IMAGE_FACET_PREFIX  # its keyword keys
        self._guard = WriterGuard(location, None, None)  # ImageStore._connected sets its own
        self._reopen: Callable[[], None] = lambda: None  # opens again as it was opened
        # Keyword partitions of the records and of the image vectors (store/partitions.py):
        # a writer keeps the configured facets'; a reader searches the complete ones.
        self._parts: Partitions | None = None
        self._visual_parts: Partitions | None = None

    @property
    def spec(self) -> EmbeddingSpec:
        """The vector space the records were built in."""
        return schema.spec_of(self._collection.metadata or {})

    @property
    def collection_id(self) -> str:
        """The records collection's own id: a catalog reset or switched in gets a new one."""
        return str(self._collection.id)

    @property
    def image_spec(self) -> EmbeddingSpec | None:
        """The vector space of the image vectors, or None when there are none."""
        return schema.spec_of(self._visual.metadata or {}) if self._visual is not None else None

    @property
    def _collection(self) -> Collection:
        assert self._records is not None, "ImageStore.open() opens the collection"
        return self._records

    def check(self, spec: EmbeddingSpec) -> None:
        """Refuse to use this collection with vectors of another space."""
        self._refuse_other_space(self._collection, spec)

    def _refuse_other_space(self, collection: Collection, spec: EmbeddingSpec) -> None:
        recorded = schema.spec_of(collection.metadata or {})
        if recorded != spec:
            if recorded.provider == "gemini":
                same = (
                    f"GEMINI_EMBEDDING_MODEL={recorded.model} GEMINI_EMBEDDING_DIM={recorded.dim}"
                )
            else:
                same = f"--provider {recorded.provider}"
            raise EmbeddingMismatchError(
                f"collection {collection.name!r} was built with {recorded}, but {spec} is "
                f"configured; run `indexer reembed` to move it to {spec} (no generation "
                f"calls), use it as it is with {same}, or start over with `indexer reset`"
            )

    @store_errors
    def replaced(self) -> bool:
        """Whether the collection this store holds is gone, or another now bears its name
        (a finished `indexer reembed` switches new collections in under the same names)."""
        found = layout.find(self._client, self.name)
        return found is None or found.id != self._collection.id

    def partitioned(self, pictures: bool = False) -> frozenset[str]:
        """The facets whose keyword partitions a search may use."""
        parts = self._visual_parts if pictures else self._parts
        return frozenset(parts.facets) if parts is not None else frozenset()

    @store_errors
    def known_paths(self, ids: Sequence[str]) -> dict[str, str]:
        """Path of each id that is already indexed."""
        found: dict[str, str] = {}
        for chunk in chunks(list(ids)):
            got = self._collection.get(ids=list(chunk), include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = str((meta or {}).get(keys.PATH, ""))
        return found

    @store_errors
    def stats_at(self, paths: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        """path -> (id, size, mtime_ns) recorded for the records at these paths, so that a
        re-run or `status` can tell an unchanged file without reading it."""
        found: dict[str, tuple[str, int, int]] = {}
        for chunk in chunks(list(paths)):
            got = self._collection.get(
                where={keys.PATH: {"$in": list(chunk)}}, include=["metadatas"]
            )
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                meta = meta or {}
                found[str(meta.get(keys.PATH, ""))] = (
                    rid,
                    int(meta.get(keys.SIZE, -1)),
                    int(meta.get(keys.MTIME_NS, -1)),
                )
        return found

    def _records_at(self, paths: Sequence[str]) -> dict[str, str]:
        """id -> path of the records at any of `paths`."""
        found: dict[str, str] = {}
        for chunk in chunks(list(paths)):
            got = self._collection.get(
                where={keys.PATH: {"$in": list(chunk)}}, include=["metadatas"]
            )
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = str((meta or {}).get(keys.PATH, ""))
        return found

    def _keywords_of(self, ids: Sequence[str]) -> dict[str, Keywords]:
        """The stored keywords of those of `ids` that have a record."""
        found: dict[str, Keywords] = {}
        for chunk in chunks(list(ids)):
            got = self._collection.get(ids=list(chunk), include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = schema.filter_keywords(meta or {})
        return found

    @store_errors
    def paths_under(self, folder: str) -> list[str]:
        """Paths (copies too) of the records anywhere below `folder`, found through the
        folder index."""
        got = self._collection.get(
            where={schema.FOLDERS: {"$contains": folder.rstrip("/") or "/"}},
            include=["metadatas"],
        )
        below = folder.rstrip("/") + "/"
        found = []
        for meta in got["metadatas"] or []:
            copies = (meta or {}).get(keys.COPIES)
            paths = [
                str((meta or {}).get(keys.PATH, "")),
                *(copies if isinstance(copies, list) else []),
            ]
            found += [str(p) for p in paths if str(p).startswith(below)]
        return found

    def records(self, vectors: bool = False, page: int = 500) -> Iterator[StoredRecord]:
        """Every record, a page at a time, so that memory stays flat on any catalog size."""
        offset = 0
        while True:
            rows = self._page(offset, page, vectors)
            yield from rows
            if len(rows) < page:
                return
            offset += page

    @store_errors
    def listing(self, page: int = 2000) -> list[Listed]:
        """Every record's id, time of indexing and keywords (no documents, no vectors)."""
        listed: list[Listed] = []
        for got in pages(self._collection, ["metadatas"], page):
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                meta = meta or {}
                at = str(meta.get(keys.INDEXED_AT, ""))
                listed.append(Listed(rid, at, schema.filter_keywords(meta)))
        return listed

    @store_errors
    def by_ids(self, ids: Sequence[str]) -> list[StoredRecord]:
        """The records with these ids, in that order (missing ones left out)."""
        if not ids:
            return []
        got = self._collection.get(ids=list(ids), include=["metadatas", "documents"])
        found = {
            rid: schema.stored(rid, m, doc)
            for rid, m, doc in zip(
                got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True
            )
        }
        return [found[rid] for rid in ids if rid in found]

    @store_errors
    def _page(self, offset: int, limit: int, vectors: bool) -> list[StoredRecord]:
        include = ["metadatas", "documents", *(["embeddings"] if vectors else [])]
        got = self._collection.get(limit=limit, offset=offset, include=include)
        return self._with_pictures(got, vectors)

    def _with_pictures(self, got: Any, vectors: bool) -> list[StoredRecord]:
        """StoredRecords from a `get` result, with their image vectors when `vectors`."""
        ids = list(got["ids"])
        pictures: dict[str, Any] = {}
        if vectors and self._visual is not None and ids:
            visual = self._visual.get(ids=ids, include=["embeddings"])
            pictures = dict(zip(visual["ids"], visual["embeddings"], strict=True))
        embeddings = got["embeddings"] if vectors else None
        return [
            schema.stored(
                rid,
                meta,
                doc,
                embeddings[i] if embeddings is not None else None,
                pictures.get(rid),
            )
            for i, (rid, meta, doc) in enumerate(
                zip(ids, got["metadatas"] or [], got["documents"] or [], strict=True)
            )
        ]

    @store_errors
    def record(self, image_id: str) -> StoredRecord | None:
        got = self._collection.get(ids=[image_id], include=["metadatas", "documents"])
        if not got["ids"]:
            return None
        return schema.stored(image_id, (got["metadatas"] or [{}])[0], (got["documents"] or [""])[0])

    @store_errors
    def count(self) -> int:
        return self._collection.count()
