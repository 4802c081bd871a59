"""Opening a catalog for reading or writing, and writing it.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from indexer.errors import EmbeddingMismatchError, NoCollectionError
from indexer.records import EmbeddingSpec, ImageRecord
from indexer.store import integrity, layout, partitions, schema
from indexer.store.batches import BatchEntry
from indexer.store.connection import chunks, connect, disconnect, fresh_metadata, now, store_errors
from indexer.store.guard import WriterGuard
from indexer.store.leases import WriterLeases
from indexer.store.partitions import Partitions
from indexer.store.paths import StorePaths
from indexer.store.staging import Staging, finish_switch

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from indexer.config import Settings

log = logging.getLogger(__name__)

FACET_PREFIX = schema.FACET_PREFIX


class ImageStore(StorePaths):
    """A catalog opened for reading or writing: `ImageStore.open`."""

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        write: bool = False,
        spec: EmbeddingSpec | None = None,
        image_spec: EmbeddingSpec | None = None,
        exclusive: bool = False,
        own_engine: bool = False,
    ) -> ImageStore:
        """Open the configured collection, upgraded to the current schema.

        Reading: the collection must exist; with `spec`, another vector space is refused;
        `exclusive` also takes the writer lock (to rewrite the collection's vectors).
        Writing (`spec` required): collections are created as needed and checked against
        `spec` and `image_spec`; on the embedded store a second writer is refused.
        `own_engine`: see `connect`; close the store with `disconnect` then."""
        store = cls._connected(settings, own_engine)
        if write:
            if spec is None:
                raise ValueError("opening a store for writing needs the embedding spec")
            store._open_for_writing(spec, image_spec, settings.partition_facets)
        else:
            if exclusive:
                store._guard.lock()
            try:
                store._open_for_reading(spec)
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def _connected(cls, settings: Settings, own_engine: bool = False) -> ImageStore:
        """A store on the configured Chroma, no collection opened yet."""
        client, location = connect(settings, own_engine)
        retry = settings.store_retry_seconds if settings.uses_server else 0.0
        store = cls(client, settings.collection, location, retry)
        if settings.uses_server:
            leases = WriterLeases(client, settings.collection, location, retry)
            store._guard = WriterGuard(location, None, leases)
        else:
            store._guard = WriterGuard(location, settings.store_path / "writer.lock", None)
        return store

    @store_errors
    def _open_for_reading(self, spec: EmbeddingSpec | None) -> None:
        from chromadb.errors import NotFoundError

        self._reopen = lambda: self._open_for_reading(spec)
        finish_switch(self._client, self.name)  # a reembed killed while switching
        try:
            self._records = self._client.get_collection(self.name, embedding_function=None)
        except NotFoundError as exc:
            raise NoCollectionError(
                f"no collection {self.name!r} in {self.location}; index images first "
                "with `indexer run PATH`"
            ) from exc
        stale = schema.version_of(self._records.metadata or {}) < schema.SCHEMA_VERSION
        # A reader upgrades only when no writer holds the store; a writer upgrades on open.
        if stale and self._guard.locked:
            self._upgrade()
        elif stale and self._guard.try_lock():
            try:
                self._upgrade()
            finally:
                self.close()
        version = schema.check_version(self.name, self._records.metadata or {})
        if version < schema.IMAGE_KEYS_SINCE:  # an older writer holds it: keys as they are
            self._image_prefix = FACET_PREFIX
        self._visual = layout.find(self._client, f"{self.name}-images")
        if spec is not None:
            self.check(spec)
        self._parts, self._visual_parts = self._partitions(
            sorted(partitions.complete_facets(self._records.metadata or {}))
        )

    @store_errors
    def _open_for_writing(
        self, spec: EmbeddingSpec, image_spec: EmbeddingSpec | None, facets: Sequence[str]
    ) -> None:
        self._guard.lock()
        self._reopen = lambda: self._open_for_writing(spec, image_spec, facets)
        try:
            finish_switch(self._client, self.name)
            self._records = schema.vector_collection(self._client, self.name, spec, self.name)
            self._upgrade()
            self._adopt_if_empty(spec, image_spec)
            self.check(spec)
            if image_spec is None:
                self._visual = layout.find(self._client, f"{self.name}-images")
            else:
                images = f"{self.name}-images"
                self._visual = schema.vector_collection(self._client, images, image_spec, self.name)
                self._refuse_other_space(self._visual, image_spec)
            self._keep_partitions(facets)
            partitions.finish_pending(
                self._collection, self._visual, self._parts, self._visual_parts
            )
        except BaseException:
            self.close()
            raise

    def _adopt_if_empty(self, spec: EmbeddingSpec, image_spec: EmbeddingSpec | None) -> None:
        """A collection that holds no record yet (a first run that reached no model) takes
        the space of whichever provider writes to it next, instead of refusing it."""
        records = self._collection
        visual = layout.find(self._client, f"{self.name}-images")
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
        self._records = schema.vector_collection(self._client, self.name, spec, self.name)

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

    def _upgrade(self) -> None:
        if schema.upgrade(self._client, self.name, [f"{self.name}-images"]):
            self._records = self._client.get_collection(self.name, embedding_function=None)
        # Partitions search as wide as their catalog: at a million records, the summer
        # partition's recall needed it too.
        ef = schema.search_ef(self._collection.count())
        siblings = [f"{self.name}-images", *layout.partition_names(self._client, self.name)]
        found = [layout.find(self._client, name) for name in siblings]
        for collection in (self._records, *found):
            if collection is not None:
                schema.widen_search(collection, ef)

    @classmethod
    def reset(cls, settings: Settings) -> list[tuple[str, int]]:
        """Drop the collection and every collection kept beside it (image vectors, failure
        log, roots, usage, batch jobs, a staged re-embedding). Returns what was dropped, with
        each one's entry count. Takes the writer lock on the embedded store."""
        store = cls._connected(settings)
        store._guard.lock()
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
        """Every collection of this catalog, dropped (layout.drop_catalog)."""
        return layout.drop_catalog(self._client, self.name)

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
        report = integrity.verify(view, self.location, repair, progress)
        if any(f.repaired for f in report.findings):
            self.changes.touch()  # a repair may have changed what filters and counts see
        return report

    def staging(self, spec: EmbeddingSpec, image_spec: EmbeddingSpec | None) -> Staging:
        """Collections to re-embed this one into `spec` beside it (see store.staging)."""
        staging = Staging(
            self._client, self.name, self.location, self.retry_seconds, spec, image_spec
        )
        staging.open()
        return staging

    def hold(self) -> None:
        """Take a writer hold before paying for work this store is to write; release it
        once written. On a Chroma server, a reembed switches the catalog only while no
        writer holds one, so nothing written under a hold is left behind; while a switch
        is under way, the first hold waits for it and then opens the new collections."""
        if not self._guard.enter():
            return
        if not self.replaced():
            return
        before = self.spec
        try:
            self._reopen()
        except EmbeddingMismatchError:
            self._guard.leave()
            after = schema.spec_of(fresh_metadata(self._client, self.name))
            raise EmbeddingMismatchError(
                f"`indexer reembed` moved catalog {self.name!r} from {before} to {after} "
                "while this process ran; what it wrote before is kept. Configure that "
                "model and run it again"
            ) from None
        except BaseException:
            self._guard.leave()
            raise

    def release(self) -> None:
        self._guard.leave()

    @property
    def shared(self) -> bool:
        """Whether other processes may write this catalog meanwhile (a Chroma server; the
        embedded store's writer lock keeps them out)."""
        return self._guard.shared

    def switch_waiting(self) -> bool:
        """Whether a reembed waits for writers to release their holds before switching."""
        return self._guard.fenced()

    @contextmanager
    def _held(self) -> Iterator[None]:
        self.hold()
        try:
            yield
        finally:
            self.release()

    def close(self) -> None:
        """Release the writer lock; reading still works."""
        self._guard.unlock()

    def disconnect(self) -> None:
        self.close()
        disconnect(self._client)

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            for chunk in chunks(records):  # within a write's record limit (connection.py)
                self._write(chunk)
            self.changes.touch()  # readers' listings are out of date (store/changes.py)

    def _write(self, records: Sequence[ImageRecord]) -> None:
        ids = [r.id for r in records]
        before = self._keywords_of(ids) if self._parts is not None else {}
        pending = {schema.PARTS_PENDING: True} if self._parts is not None else None
        schema.write(self._collection, self._visual, records, [now()] * len(records), pending)
        if self._parts is not None:
            partitions.write_records(self._parts, self._visual_parts, records, before)
            self._collection.update(ids=ids, metadatas=[{schema.PARTS_PENDING: None}] * len(ids))
        # A path shows one image: a record of what the file held before it was edited goes.
        written = set(ids)
        self._delete([i for i in self._records_at([r.path for r in records]) if i not in written])

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
