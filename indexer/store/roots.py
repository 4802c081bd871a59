"""The catalog's folders: every folder a run was given, kept in the main collection's
metadata, so that `indexer status` can count what is pending under them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from indexer.store.connection import fresh_metadata, store_errors

if TYPE_CHECKING:
    from chromadb.api import ClientAPI


def roots_of(meta: Mapping[str, Any]) -> list[str]:
    return list(json.loads(str(meta.get("roots_json", "[]"))))


class RootList:
    def __init__(self, client: ClientAPI, name: str, location: str, retry_seconds: float) -> None:
        self._client = client
        self.name = name
        self.location = location
        self.retry_seconds = retry_seconds

    @store_errors
    def remember(self, roots: Sequence[str]) -> None:
        """Add folders to the list."""
        # Read afresh: another worker may have added its roots since this one opened it.
        meta = fresh_metadata(self._client, self.name)
        known = roots_of(meta)
        merged = sorted(set(known) | set(roots))
        if merged != known:
            # modify() replaces the whole metadata, so the recorded spec is written back too.
            collection = self._client.get_collection(self.name, embedding_function=None)
            collection.modify(metadata={**meta, "roots_json": json.dumps(merged)})

    @store_errors
    def all(self) -> list[str]:
        return roots_of(fresh_metadata(self._client, self.name))
