"""The vector store: the only package that talks to Chroma.

One collection holds a record per image (id = content hash): the caption as the document,
the "keywords. caption" embedding, and metadata (see `schema`). `<name>-images` holds each
picture's own vector where an image model gives one; `<name>-failures` is the failure log
(`failures`). The main collection records the embedding model that built it and its schema
version; opening it with another model is refused, and an older schema is upgraded.

`ImageStore.open` returns a store ready for what was asked: reading an existing collection,
or writing (collections created, spec checked, and on the embedded store the writer lock held).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import EmbeddingMismatchError, StoreBusyError, StoreError
from indexer.ranking import as_hit
from indexer.records import EmbeddingSpec, Hit, ImageRecord, Listed, Neighbour, StoredRecord
from indexer.store import integrity, layout, partitions, schema
from indexer.store.batches import BatchEntry, BatchLog
from indexer.store.connection import chunks, connect, fresh_metadata, now, store_errors
from indexer.store.failures import FailureLog
from indexer.store.leases import WriterLeases
from indexer.store.partitions import Partitions
from indexer.store.roots import RootList
from indexer.store.staging import Staging, finish_switch
from indexer.store.usage import UsageLog
from indexer.vocabulary import Keywords, Where, matches

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from indexer.config import Settings

log = logging.getLogger(__name__)

__all__ = ["FailureLog", "ImageStore", "RootList", "UsageLog", "where_clause"]

FACET_PREFIX = schema.FACET_PREFIX
_COSINE = schema.COSINE


def where_clause(
    filters: Mapping[str, Sequence[str]], prefix: str = FACET_PREFIX
) -> dict[str, Any] | None:
    """Chroma filter for "each facet contains each of its keywords", ANDed."""
    terms = [
        {f"{prefix}{facet}": {"$contains": keyword}}
        for facet, keywords in filters.items()
        for keyword in keywords
    ]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"$and": terms}


def _satisfies(record: StoredRecord, where: Where | None) -> bool:
    """The record's own filter keys, the ones a pre-filtered search reads, satisfy `where`."""
    return not where or matches(schema.filter_keywords(record.metadata), where)


class ImageStore:
    """Records and image vectors of one collection. Build it with `ImageStore.open`."""

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
        self.batches = BatchLog(client, name, location, retry_seconds)
        self._records: Collection | None = None
        self._visual: Collection | None = None  # "<name>-images": one image vector per record
        self._image_prefix = schema.IMAGE_FACET_PREFIX  # its keyword keys
        self._lock_path: Path | None = None
        self._writer_lock: Any = None  # filelock.FileLock while writing an embedded store
        self._leases: WriterLeases | None = None  # on a server, where there is no lock
        self._reopen: Callable[[], None] = lambda: None  # opens again as it was opened
        # Keyword partitions of the records and of the image vectors (store/partitions.py):
        # a writer keeps the configured facets'; a reader searches the complete ones.
        self._parts: Partitions | None = None
        self._visual_parts: Partitions | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        write: bool = False,
        spec: EmbeddingSpec | None = None,
        image_spec: EmbeddingSpec | None = None,
        exclusive: bool = False,
    ) -> ImageStore:
        """Open the configured collection, upgraded to the current schema.

        Reading: the collection must exist; with `spec`, another vector space is refused;
        `exclusive` also takes the writer lock (to rewrite the collection's vectors).
        Writing (`spec` required): collections are created as needed and checked against
        `spec` and `image_spec`; on the embedded store a second writer is refused."""
        store = cls._connected(settings)
        if write:
            if spec is None:
                raise ValueError("opening a store for writing needs the embedding spec")
            store._open_for_writing(spec, image_spec, settings.partition_facets)
        else:
            if exclusive:
                store._lock_for_writing()
            try:
                store._open_for_reading(spec)
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def _connected(cls, settings: Settings) -> ImageStore:
        """A store on the configured Chroma, no collection opened yet."""
        client, location = connect(settings)
        retry = settings.store_retry_seconds if settings.uses_server else 0.0
        store = cls(client, settings.collection, location, retry)
        if settings.uses_server:
            store._leases = WriterLeases(client, settings.collection, location, retry)
        else:
            store._lock_path = settings.store_path / "writer.lock"
        return store

    # --- opening ---

    @store_errors
    def _open_for_reading(self, spec: EmbeddingSpec | None) -> None:
        from chromadb.errors import NotFoundError

        self._reopen = lambda: self._open_for_reading(spec)
        finish_switch(self._client, self.name)  # a reembed killed while switching
        try:
            self._records = self._client.get_collection(self.name, embedding_function=None)
        except NotFoundError as exc:
            raise StoreError(
                f"no collection {self.name!r} in {self.location}; index images first "
                "with `indexer run PATH`"
            ) from exc
        stale = schema.version_of(self._records.metadata or {}) < schema.SCHEMA_VERSION
        # A reader upgrades only when no writer holds the store; a writer upgrades on open.
        if stale and self._writer_lock is not None:
            self._upgrade()
        elif stale and self._try_lock():
            try:
                self._upgrade()
            finally:
                self.close()
        version = schema.check_version(self.name, self._records.metadata or {})
        if version < schema.IMAGE_KEYS_SINCE:  # an older writer holds it: keys as they are
            self._image_prefix = FACET_PREFIX
        self._visual = self._existing(f"{self.name}-images")
        if spec is not None:
            self.check(spec)
        self._parts, self._visual_parts = self._partitions(
            sorted(partitions.complete_facets(self._records.metadata or {}))
        )

    @store_errors
    def _open_for_writing(
        self, spec: EmbeddingSpec, image_spec: EmbeddingSpec | None, facets: Sequence[str]
    ) -> None:
        self._lock_for_writing()
        self._reopen = lambda: self._open_for_writing(spec, image_spec, facets)
        try:
            finish_switch(self._client, self.name)
            self._records = self._client.get_or_create_collection(
                self.name,
                configuration=_COSINE,
                metadata={**schema.spec_metadata(spec, now()), **layout.mark(self.name)},
                embedding_function=None,
            )
            self._upgrade()
            self._adopt_if_empty(spec, image_spec)
            self.check(spec)
            if image_spec is None:
                self._visual = self._existing(f"{self.name}-images")
            else:
                self._visual = self._client.get_or_create_collection(
                    f"{self.name}-images",
                    configuration=_COSINE,
                    metadata={**schema.spec_metadata(image_spec, now()), **layout.mark(self.name)},
                    embedding_function=None,
                )
                self._refuse_other_space(self._visual, image_spec)
            self._keep_partitions(facets)
            self._finish_pending()
        except BaseException:
            self.close()
            raise

    def _adopt_if_empty(self, spec: EmbeddingSpec, image_spec: EmbeddingSpec | None) -> None:
        """A collection that holds no record yet (a first run that reached no model) takes
        the space of whichever provider writes to it next, instead of refusing it."""
        records = self._collection
        visual = self._existing(f"{self.name}-images")
        same_pictures = visual is None or image_spec is None
        if not same_pictures and visual is not None:
            same_pictures = schema.spec_of(visual.metadata or {}) == image_spec
        if schema.spec_of(records.metadata or {}) == spec and same_pictures:
            return
        if records.count() or (visual is not None and visual.count()):
            return
        if visual is not None:
            layout.drop(self._client, visual.name, self.name)
        layout.drop(self._client, self.name, self.name)
        self._records = self._client.create_collection(
            self.name,
            configuration=_COSINE,
            metadata={**schema.spec_metadata(spec, now()), **layout.mark(self.name)},
            embedding_function=None,
        )

    def _partitions(self, facets: Sequence[str]) -> tuple[Partitions | None, Partitions | None]:
        """The partitions of `facets`, of the records and of the image vectors."""
        if not facets:
            return None, None
        return self._partitions_of(self._records, facets), self._partitions_of(self._visual, facets)

    def _partitions_of(self, source: Collection | None, facets: Sequence[str]) -> Partitions | None:
        if source is None:
            return None
        spec = schema.spec_of(source.metadata or {})
        return Partitions(self._client, source.name, spec, facets, self.name)

    def _keep_partitions(self, facets: Sequence[str]) -> None:
        """Partition the configured facets: build the ones the collection lacks (from its
        records and image vectors), drop the ones no longer configured, then record which
        are complete. Facets recorded complete are kept up to date by every write."""
        done = partitions.complete_facets(fresh_metadata(self._client, self.name))
        wanted = set(facets)
        missing, dropped = sorted(wanted - done), sorted(done - wanted)
        if missing or dropped:
            for source in (self._records, self._visual):
                building = self._partitions_of(source, missing)
                if source is None or building is None:
                    continue
                building.drop(missing + dropped)  # a half-built facet is built from scratch
                prefix = self._image_prefix if source is self._visual else FACET_PREFIX
                count = partitions.build(source, building, prefix) if missing else 0
                if count:
                    log.warning(
                        "partitioned %d records of %r by %s", count, source.name, ", ".join(missing)
                    )
            partitions.mark_complete(self._client, self.name, sorted(wanted))
            self._records = self._client.get_collection(self.name, embedding_function=None)
        self._parts, self._visual_parts = self._partitions(sorted(wanted))

    def partitioned(self, pictures: bool = False) -> frozenset[str]:
        """The facets whose keyword partitions a search may use."""
        parts = self._visual_parts if pictures else self._parts
        return frozenset(parts.facets) if parts is not None else frozenset()

    def _upgrade(self) -> None:
        if schema.upgrade(self._client, self.name, [f"{self.name}-images"]):
            self._records = self._client.get_collection(self.name, embedding_function=None)
        # Partitions search as wide as their catalog: at a million records, the summer
        # partition's recall needed it too.
        ef = schema.search_ef(self._collection.count())
        siblings = [f"{self.name}-images", *partitions.partition_names(self._client, self.name)]
        for collection in (self._records, *map(self._existing, siblings)):
            if collection is not None:
                schema.widen_search(collection, ef)

    def _existing(self, name: str) -> Collection | None:
        from chromadb.errors import NotFoundError

        try:
            return self._client.get_collection(name, embedding_function=None)
        except NotFoundError:
            return None

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

    @classmethod
    def reset(cls, settings: Settings) -> list[tuple[str, int]]:
        """Drop the collection and every collection kept beside it (image vectors, failure
        log, roots, usage, batch jobs, a staged re-embedding). Returns what was dropped, with
        each one's entry count. Takes the writer lock on the embedded store."""
        store = cls._connected(settings)
        store._lock_for_writing()
        try:
            return store._drop_all()
        finally:
            store.close()

    @classmethod
    def open_jobs(cls, settings: Settings) -> list[BatchEntry]:
        """The batch jobs the catalog's log still holds (paid for, not yet collected)."""
        store = cls._connected(settings)
        if layout.find(store._client, store.batches.name) is None:
            return []
        return store.batches.entries()

    @store_errors
    def _drop_all(self) -> list[tuple[str, int]]:
        """Every collection of this catalog, dropped; a collection that only bears one of
        its names (another catalog's, another tool's) is left as it is, with a warning."""
        dropped = []
        kept = [self.name, *layout.siblings(self.name)]
        for base in (self.name, f"{self.name}-images"):
            kept += partitions.partition_names(self._client, base)
        for name in kept:
            try:
                held = layout.drop(self._client, name, self.name)
            except StoreError as exc:
                log.warning("%s", exc)
                continue
            if held is not None:
                dropped.append((name, held))
        return dropped

    @store_errors
    def verify(
        self, repair: bool = False, progress: integrity.Progress = lambda _stage, _n: None
    ) -> integrity.Report:
        """Check the invariants searches rely on and, with `repair`, mend what the records
        allow (store/integrity.py). Repairing wants the writer lock: open with
        `exclusive=True` on the embedded store."""
        view = integrity.Parts(
            self._client,
            self.name,
            self._collection,
            self._visual,
            self._parts,
            self._visual_parts,
            self._image_prefix,
            self.batches,
        )
        return integrity.verify(view, self.location, repair, progress)

    def staging(self, spec: EmbeddingSpec, image_spec: EmbeddingSpec | None) -> Staging:
        """Collections to re-embed this one into `spec` beside it (see store.staging)."""
        staging = Staging(
            self._client, self.name, self.location, self.retry_seconds, spec, image_spec
        )
        staging.open()
        return staging

    def check(self, spec: EmbeddingSpec) -> None:
        """Refuse to use this collection with vectors of another space."""
        self._refuse_other_space(self._collection, spec)

    @store_errors
    def replaced(self) -> bool:
        """Whether the collection this store holds is gone, or another now bears its name
        (a finished `indexer reembed` switches new collections in under the same names)."""
        found = layout.find(self._client, self.name)
        return found is None or found.id != self._collection.id

    @property
    def spec(self) -> EmbeddingSpec:
        """The vector space the records were built in."""
        return schema.spec_of(self._collection.metadata or {})

    @property
    def image_spec(self) -> EmbeddingSpec | None:
        """The vector space of the image vectors, or None when there are none."""
        return schema.spec_of(self._visual.metadata or {}) if self._visual is not None else None

    @property
    def _collection(self) -> Collection:
        assert self._records is not None, "ImageStore.open() opens the collection"
        return self._records

    # --- writers on a server (store/leases.py) ---

    def hold(self) -> None:
        """Take a writer hold before paying for work this store is to write; release it
        once written. On a Chroma server, a reembed switches the catalog only while no
        writer holds one, so nothing written under a hold is left behind; while a switch
        is under way, the first hold waits for it and then opens the new collections."""
        if self._leases is None or not self._leases.enter():
            return
        if not self.replaced():
            return
        before = self.spec
        try:
            self._reopen()
        except EmbeddingMismatchError:
            self._leases.leave()
            after = schema.spec_of(fresh_metadata(self._client, self.name))
            raise EmbeddingMismatchError(
                f"`indexer reembed` moved catalog {self.name!r} from {before} to {after} "
                "while this process ran; what it wrote before is kept. Configure that "
                "model and run it again"
            ) from None
        except BaseException:
            self._leases.leave()
            raise

    def release(self) -> None:
        if self._leases is not None:
            self._leases.leave()

    def switch_waiting(self) -> bool:
        """Whether a reembed waits for writers to release their holds before switching."""
        return self._leases is not None and self._leases.fenced()

    @contextmanager
    def _held(self) -> Iterator[None]:
        self.hold()
        try:
            yield
        finally:
            self.release()

    # --- the writer lock ---

    def _try_lock(self) -> bool:
        try:
            self._lock_for_writing()
        except StoreBusyError:
            return False
        return True

    def _lock_for_writing(self) -> None:
        """One writer per embedded store: two processes would each index everything.

        A Chroma server serialises writers itself, so shard workers share one instead."""
        if self._lock_path is None or self._writer_lock is not None:
            return
        from filelock import FileLock, Timeout

        lock = FileLock(self._lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise StoreBusyError(
                f"the store at {self.location} is busy: another indexer process is writing "
                "to it; wait for it to finish, or run several workers against a Chroma "
                "server (chroma run --path DIR, then CHROMA_HOST=... indexer run --shard K/N)"
            ) from None
        self._writer_lock = lock

    def close(self) -> None:
        """Release the writer lock; reading still works."""
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- records ---

    @store_errors
    def known_paths(self, ids: Sequence[str]) -> dict[str, str]:
        """Path of each id that is already indexed."""
        found: dict[str, str] = {}
        for chunk in chunks(list(ids)):
            got = self._collection.get(ids=list(chunk), include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = str((meta or {}).get("path", ""))
        return found

    @store_errors
    def stats_at(self, paths: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        """path -> (id, size, mtime_ns) recorded for the records at these paths, so that a
        re-run or `status` can tell an unchanged file without reading it."""
        found: dict[str, tuple[str, int, int]] = {}
        for chunk in chunks(list(paths)):
            got = self._collection.get(where={"path": {"$in": list(chunk)}}, include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                meta = meta or {}
                found[str(meta.get("path", ""))] = (
                    rid,
                    int(meta.get("size", -1)),
                    int(meta.get("mtime_ns", -1)),
                )
        return found

    @store_errors
    def update_stats(self, stats: Mapping[str, tuple[str, int, int]]) -> None:
        """Record (path, size, mtime_ns) for records (by id) whose file was read again."""
        if not stats:
            return
        with self._held():
            ids = list(stats)
            self._collection.update(
                ids=ids,
                metadatas=[
                    {
                        "path": stats[i][0],
                        schema.FOLDERS: schema.folders_of(stats[i][0]),
                        "size": stats[i][1],
                        "mtime_ns": stats[i][2],
                    }
                    for i in ids
                ],
            )

    @store_errors
    def upsert(self, records: Sequence[ImageRecord]) -> None:
        """Write complete records, vectors and metadata together, then their partitions.

        The record goes first, flagged `PARTS_PENDING` until its partitions are written: a
        crash in between leaves a flag that the next writer (or `indexer check --repair`)
        acts on, where partition entries written first would be left for nobody to find.
        Readers check every hit against its record's own keywords meanwhile (`answer`)."""
        if not records:
            return
        with self._held():
            self._write(records)

    def _write(self, records: Sequence[ImageRecord]) -> None:
        ids = [r.id for r in records]
        before = self._keywords_of(ids) if self._parts is not None else {}
        pending = {schema.PARTS_PENDING: True} if self._parts is not None else None
        schema.write(self._collection, self._visual, records, [now()] * len(records), pending)
        if self._parts is not None:
            self._write_partitions(records, before)
            self._collection.update(ids=ids, metadatas=[{schema.PARTS_PENDING: None}] * len(ids))
        # A path shows one image: a record of what the file held before it was edited goes.
        written = set(ids)
        self._delete([i for i in self._records_at([r.path for r in records]) if i not in written])

    def _write_partitions(
        self, records: Sequence[ImageRecord], before: Mapping[str, Keywords] | None
    ) -> None:
        if self._parts is None:
            return
        ids = [r.id for r in records]
        self._parts.write(
            ids, [r.embedding for r in records], [r.keywords for r in records], before
        )
        pictured = [(r, r.image_embedding) for r in records if r.image_embedding is not None]
        if self._visual_parts is not None and pictured:
            self._visual_parts.write(
                [r.id for r, _ in pictured],
                [vector for _, vector in pictured],
                [r.keywords for r, _ in pictured],
                before,
            )

    def _finish_pending(self) -> int:
        """Partition the records a crash left flagged: out of every partition, then into
        those of their keywords. Returns how many."""
        if self._parts is None:
            return 0
        got = self._collection.get(
            where={schema.PARTS_PENDING: True}, include=["metadatas", "embeddings"]
        )
        ids = list(got["ids"])
        if not ids:
            return 0
        pictures: dict[str, Any] = {}
        if self._visual is not None:
            visual = self._visual.get(ids=ids, include=["embeddings"])
            pictures = dict(zip(visual["ids"], visual["embeddings"], strict=True))
        for parts in (self._parts, self._visual_parts):
            if parts is not None:
                parts.remove(ids)
        self._parts.write(
            ids,
            [list(v) for v in got["embeddings"]],
            [schema.filter_keywords(m or {}) for m in got["metadatas"] or []],
        )
        if self._visual_parts is not None:
            kept = [
                (i, m) for i, m in zip(ids, got["metadatas"] or [], strict=True) if i in pictures
            ]
            self._visual_parts.write(
                [i for i, _ in kept],
                [list(pictures[i]) for i, _ in kept],
                [schema.filter_keywords(m or {}) for _, m in kept],
            )
        self._collection.update(ids=ids, metadatas=[{schema.PARTS_PENDING: None}] * len(ids))
        log.warning("finished partitioning %d records a crash left half-written", len(ids))
        return len(ids)

    def _records_at(self, paths: Sequence[str]) -> dict[str, str]:
        """id -> path of the records at any of `paths`."""
        found: dict[str, str] = {}
        for chunk in chunks(list(paths)):
            got = self._collection.get(where={"path": {"$in": list(chunk)}}, include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = str((meta or {}).get("path", ""))
        return found

    def _keywords_of(self, ids: Sequence[str]) -> dict[str, Keywords]:
        """The stored keywords of those of `ids` that have a record."""
        found: dict[str, Keywords] = {}
        for chunk in chunks(list(ids)):
            got = self._collection.get(ids=list(chunk), include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = schema.filter_keywords(meta or {})
        return found

    def _delete(self, ids: Sequence[str]) -> None:
        """Partition entries and image vectors first, the record last: a crash in between
        leaves the record, which the next run removes again, rather than entries no record
        accounts for."""
        if not ids:
            return
        for parts in (self._parts, self._visual_parts):
            if parts is not None:
                parts.remove(ids)
        for chunk in chunks(list(ids)):
            if self._visual is not None:
                self._visual.delete(ids=list(chunk))
            self._collection.delete(ids=list(chunk))

    @store_errors
    def remove_paths(self, paths: Sequence[str]) -> int:
        """Forget the images at these paths (their files are gone); return how many."""
        with self._held():
            ids = list(self._records_at(paths))
            self._delete(ids)
        self.failures.clear((), paths)
        return len(ids)

    @store_errors
    def paths_under(self, folder: str) -> list[str]:
        """Paths of the records anywhere below `folder`, found through the folder index."""
        got = self._collection.get(
            where={schema.FOLDERS: {"$contains": folder.rstrip("/") or "/"}},
            include=["metadatas"],
        )
        return [str((m or {}).get("path", "")) for m in got["metadatas"] or []]

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
        offset = 0
        while True:
            got = self._collection.get(limit=page, offset=offset, include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                meta = meta or {}
                at = str(meta.get("indexed_at", ""))
                listed.append(Listed(rid, at, schema.filter_keywords(meta)))
            if len(got["ids"]) < page:
                return listed
            offset += page

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

    # --- search ---

    @store_errors
    def nearest(
        self,
        vector: Sequence[float],
        k: int,
        where: Mapping[str, Sequence[str]] | None = None,
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
            where=where_clause(where or {}, prefix),
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
        where: Mapping[str, Sequence[str]],
        limit: int,
        pictures: bool = False,
    ) -> list[Hit]:
        """The `limit` nearest records under `where`, filtered by Chroma (no planning: the
        query client plans through query/planner.py)."""
        return self.answer(self.nearest(vector, limit, where, pictures, whole=True), where)

    def candidates(
        self,
        text_vector: Sequence[float],
        image_vector: Sequence[float],
        where: Mapping[str, Sequence[str]],
        k: int,
    ) -> list[StoredRecord]:
        """The `k` nearest of each route, with both vectors, for `ranking.fused`."""
        ids = dict.fromkeys(
            n.id
            for vector, pictures in ((text_vector, False), (image_vector, True))
            for n in self.nearest(vector, k, where, pictures)
        )
        return self.with_vectors(list(ids), where)

    @store_errors
    def answer(self, neighbours: Sequence[Neighbour], where: Where | None = None) -> list[Hit]:
        """Hits for a search's neighbours, in order: from the records read with them, and
        the others read now. Left out: ids without a record (an image vector whose record a
        crash never wrote), and records whose own keywords do not satisfy `where` (an image
        vector or partition entry written before a crash stopped its record's update)."""
        missing = [n.id for n in neighbours if n.record is None]
        found = {r.id: r for r in self.by_ids(missing)} if missing else {}
        out = []
        for n in neighbours:
            record = n.record or found.get(n.id)
            if record is not None and _satisfies(record, where):
                out.append(as_hit(record, n.score))
        return out

    @store_errors
    def with_vectors(self, ids: Sequence[str], where: Where | None = None) -> list[StoredRecord]:
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
