"""New vectors written beside the old ones, switched in only when complete.

`indexer reembed` fills `<name>--next` (and `<name>-images--next`) while `<name>` keeps
answering queries. Filling is resumable: what is already staged is skipped. Before the
switch, `fence` closes the catalog to writers on a Chroma server (store/leases.py) so that
nothing written to the old collection is left behind. The switch renames collections,
image vectors first; every step checks what is already done, so a switch killed mid-way is
finished by the next `Staging.switch()` or by `finish_switch` when a store opens.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from itertools import count
from typing import TYPE_CHECKING, Any

from indexer.errors import StoreError
from indexer.records import EmbeddingSpec, ImageRecord
from indexer.store import keys, layout, schema
from indexer.store.connection import chunks, fresh_metadata, pages, store_errors
from indexer.store.layout import NEXT, RETIRED, find
from indexer.store.leases import BEAT_SECONDS, FENCE, STALE_AFTER, Pulse, WriterLeases

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

_COMPLETE = keys.STAGING_COMPLETE
_PAGE = 1_000


def finish_switch(client: ClientAPI, name: str) -> bool:
    """Complete a switch a crash interrupted; True when there was one to complete."""
    staged = find(client, name + NEXT)
    switching = staged is not None and bool((staged.metadata or {}).get(_COMPLETE))
    both = (f"{name}-images", name)  # image vectors first, as in Staging.switch
    if switching:
        for each in both:
            _swap(client, each, name)
    if switching or staged is None:
        # Dropping takes a while on a big catalog: only once both names are switched.
        for each in both:
            try:
                layout.drop(client, each + RETIRED, name)
            except StoreError as exc:  # not this catalog's: left as it is
                log.warning("%s", exc)
    return switching


def _swap(client: ClientAPI, name: str, catalog: str) -> None:
    """`name--next` becomes `name`, the old `name` becomes `name--retired`. Each step is
    skipped when done."""
    staged = find(client, name + NEXT)
    if staged is None:
        return
    current = find(client, name)
    if current is not None:
        layout.drop(client, name + RETIRED, catalog)  # left by a switch killed mid-way
        current.modify(name=name + RETIRED)
    staged.modify(name=name)


class Staging:
    """The staging collections for moving `name` into the vector space `spec`."""

    def __init__(
        self,
        client: ClientAPI,
        name: str,
        location: str,
        retry_seconds: float,
        spec: EmbeddingSpec,
        image_spec: EmbeddingSpec | None,
    ) -> None:
        self._client = client
        self.name = name
        self.location = location
        self.retry_seconds = retry_seconds
        self.spec = spec
        self.image_spec = image_spec
        self._records: Collection | None = None
        self._visual: Collection | None = None
        self._meta: dict[str, Any] = {}  # the staging collection's metadata, as last written
        self._meta_lock = threading.Lock()  # the fence's heartbeat writes it too
        self._fence: Pulse | None = None
        self.beat_seconds = BEAT_SECONDS
        self.stale_after = STALE_AFTER

    @store_errors
    def open(self) -> None:
        """Create the staging collections, or take up the ones a killed run left."""
        staged = find(self._client, self.name + NEXT)
        if staged is not None and schema.spec_of(staged.metadata or {}) != self.spec:
            # Staged for another target: start over rather than mix two spaces.
            layout.drop(self._client, self.name + NEXT, self.name)
            layout.drop(self._client, f"{self.name}-images{NEXT}", self.name)
        live = fresh_metadata(self._client, self.name)
        keep = {k: v for k, v in live.items() if k == keys.ROOTS_JSON}
        self._records = schema.vector_collection(
            self._client, self.name + NEXT, self.spec, self.name, keep
        )
        if self.image_spec is not None:
            self._visual = schema.vector_collection(
                self._client, f"{self.name}-images{NEXT}", self.image_spec, self.name
            )
        # A fence a killed run left up would hold writers until judged dead: take it down.
        self._meta = {k: v for k, v in (self._records.metadata or {}).items() if k != FENCE}
        if FENCE in (self._records.metadata or {}):
            self._records.modify(metadata=self._meta)

    @property
    def _staged(self) -> Collection:
        assert self._records is not None, "Staging.open() first"
        return self._records

    @store_errors
    def staged(self, ids: Sequence[str]) -> dict[str, tuple[dict[str, Any], str]]:
        """Those of `ids` already written to the staging collection: (metadata, caption)."""
        found: dict[str, tuple[dict[str, Any], str]] = {}
        for chunk in chunks(list(ids)):
            got = self._staged.get(ids=list(chunk), include=["metadatas", "documents"])
            for rid, meta, doc in zip(
                got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True
            ):
                found[rid] = (dict(meta or {}), doc or "")
        return found

    @store_errors
    def drop_except(self, live: set[str]) -> int:
        """Delete the staged records whose id is not in `live` (deleted since they were
        staged); return how many."""
        extra = [i for got in pages(self._staged, []) for i in got["ids"] if i not in live]
        for chunk in chunks(extra):
            if self._visual is not None:
                self._visual.delete(ids=list(chunk))
            self._staged.delete(ids=list(chunk))
        return len(extra)

    @store_errors
    def write(self, records: Sequence[ImageRecord], indexed_at: Sequence[str]) -> None:
        """Stage re-embedded records (keeping when each was first indexed)."""
        if not records:
            return
        schema.write(self._staged, self._visual, records, indexed_at)

    @store_errors
    def count(self) -> int:
        return self._staged.count()

    def _set_meta(self, **changes: Any) -> None:
        with self._meta_lock:
            self._meta = {k: v for k, v in {**self._meta, **changes}.items() if v is not None}
            self._staged.modify(metadata=self._meta)

    @store_errors
    def fence(self, wait_seconds: float) -> bool:
        """Close the catalog to writers: put up the fence, then wait until no writer holds
        a lease. False, with the fence down again, if writers still held leases after
        `wait_seconds`."""
        # A token of this fence's own: a writer that judged an earlier, dead fence does not
        # take this one for it when the counters happen to match.
        token = uuid.uuid4().hex[:12]
        beats = (f"{token}:{n}" for n in count(1))
        self._set_meta(**{FENCE: next(beats)})
        self._fence = Pulse(lambda: self._set_meta(**{FENCE: next(beats)}), self.beat_seconds)
        leases = WriterLeases(
            self._client,
            self.name,
            self.location,
            self.retry_seconds,
            stale_after=self.stale_after,
        )
        if leases.wait_until_free(wait_seconds):
            return True
        self.unfence()
        return False

    @store_errors
    def unfence(self) -> None:
        """Open the catalog to writers again (without switching)."""
        if self._fence is not None:
            self._fence.stop()
            self._fence = None
        if FENCE in self._meta:
            self._set_meta(**{FENCE: None})

    @store_errors
    def switch(self) -> None:
        """Make the staged collections the live ones. Writers held off by the fence go on
        once the staged collection, which bears it, has taken the live one's name."""
        if self._fence is not None:
            self._fence.stop()  # the fence stays up, unbeaten, for the moment of the switch
            self._fence = None
        self._set_meta(**{_COMPLETE: True})
        finish_switch(self._client, self.name)
