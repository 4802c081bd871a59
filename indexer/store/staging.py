"""New vectors written beside the old ones, switched in only when complete.

`indexer reembed` fills `<name>--next` (and `<name>-images--next`) while `<name>` keeps
answering queries. Filling is resumable: what is already staged is skipped. The switch renames
collections, image vectors first; every step checks what is already done, so a switch killed
mid-way is finished by the next `Staging.switch()` or by `finish_switch` when a store opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from indexer.records import EmbeddingSpec, ImageRecord
from indexer.store import layout, schema
from indexer.store.connection import chunks, fresh_metadata, now, store_errors
from indexer.store.layout import NEXT, RETIRED, find

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

_COMPLETE = "staging_complete"
_PAGE = 1_000


def finish_switch(client: ClientAPI, name: str) -> bool:
    """Complete a switch a crash interrupted; True when there was one to complete."""
    staged = find(client, name + NEXT)
    if staged is None or not (staged.metadata or {}).get(_COMPLETE):
        return False
    for each in (f"{name}-images", name):  # image vectors first, as in Staging.switch
        _swap(client, each, name)
    return True


def _swap(client: ClientAPI, name: str, catalog: str) -> None:
    """`name--next` becomes `name`; the old `name` is dropped. Each step is skipped when done."""
    staged = find(client, name + NEXT)
    if staged is None:
        return
    current = find(client, name)
    if current is not None:
        layout.drop(client, name + RETIRED, catalog)
        current.modify(name=name + RETIRED)
    staged.modify(name=name)
    layout.drop(client, name + RETIRED, catalog)


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

    @store_errors
    def open(self) -> None:
        """Create the staging collections, or take up the ones a killed run left."""
        staged = find(self._client, self.name + NEXT)
        if staged is not None and schema.spec_of(staged.metadata or {}) != self.spec:
            # Staged for another target: start over rather than mix two spaces.
            layout.drop(self._client, self.name + NEXT, self.name)
            layout.drop(self._client, f"{self.name}-images{NEXT}", self.name)
        live = fresh_metadata(self._client, self.name)
        keep = {k: v for k, v in live.items() if k == "roots_json"}
        self._records = self._client.get_or_create_collection(
            self.name + NEXT,
            configuration=schema.COSINE,  # type: ignore[arg-type]
            metadata={**schema.spec_metadata(self.spec, now()), **keep, **layout.mark(self.name)},
            embedding_function=None,
        )
        if self.image_spec is not None:
            self._visual = self._client.get_or_create_collection(
                f"{self.name}-images{NEXT}",
                configuration=schema.COSINE,  # type: ignore[arg-type]
                metadata={**schema.spec_metadata(self.image_spec, now()), **layout.mark(self.name)},
                embedding_function=None,
            )

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
        extra: list[str] = []
        offset = 0
        while True:
            ids = self._staged.get(limit=_PAGE, offset=offset, include=[])["ids"]
            extra += [i for i in ids if i not in live]
            if len(ids) < _PAGE:
                break
            offset += _PAGE
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

    @store_errors
    def switch(self) -> None:
        """Make the staged collections the live ones."""
        self._staged.modify(metadata={**(self._staged.metadata or {}), _COMPLETE: True})
        finish_switch(self._client, self.name)
