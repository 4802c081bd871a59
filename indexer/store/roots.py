"""The catalog's folders: every folder a run was given, so that `indexer status` can count
what is pending under them.

One entry per folder in the sibling collection `<name>-roots`: adding a folder is one upsert,
so shard workers adding theirs at the same moment cannot overwrite each other (a list kept in
the collection's metadata, as schema 1 did, was read, extended and written back, and lost
one of two concurrent updates). That older list is still read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from indexer.store.connection import fresh_metadata, now, store_errors

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


def roots_of(meta: Mapping[str, Any]) -> list[str]:
    """The folders schema 1 kept in the collection's metadata."""
    return list(json.loads(str(meta.get("roots_json", "[]"))))


class RootList:
    def __init__(self, client: ClientAPI, name: str, location: str, retry_seconds: float) -> None:
        self._client = client
        self.name = name
        self.location = location
        self.retry_seconds = retry_seconds
        self._collection: Collection | None = None

    @property
    def _entries(self) -> Collection:
        if self._collection is None:
            self._collection = self._client.get_or_create_collection(
                f"{self.name}-roots", embedding_function=None
            )
        return self._collection

    @store_errors
    def remember(self, roots: Sequence[str]) -> None:
        """Add folders to the list (each its own entry)."""
        if roots:
            self._entries.upsert(
                ids=[hashlib.sha256(r.encode()).hexdigest()[:32] for r in roots],
                embeddings=[[1.0] for _ in roots],
                documents=list(roots),
                metadatas=[{"added_at": now()} for _ in roots],
            )

    @store_errors
    def all(self) -> list[str]:
        got = self._entries.get(include=["documents"])
        legacy = roots_of(fresh_metadata(self._client, self.name))
        return sorted({*(d for d in got["documents"] or [] if d), *legacy})
