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
from typing import Any

from indexer.store import keys
from indexer.store.connection import Sibling, fresh_metadata, now, store_errors


def roots_of(meta: Mapping[str, Any]) -> list[str]:
    """The folders schema 1 kept in the collection's metadata."""
    return list(json.loads(str(meta.get(keys.ROOTS_JSON, "[]"))))


class RootList(Sibling):
    suffix = "roots"

    @store_errors
    def remember(self, roots: Sequence[str]) -> None:
        """Add folders to the list (each its own entry)."""
        if roots:
            self._log.upsert(
                ids=[hashlib.sha256(r.encode()).hexdigest()[:32] for r in roots],
                embeddings=[[1.0] for _ in roots],
                documents=list(roots),
                metadatas=[{"added_at": now()} for _ in roots],
            )

    @store_errors
    def all(self) -> list[str]:
        got = self._log.get(include=["documents"])
        legacy = roots_of(fresh_metadata(self._client, self.collection))
        return sorted({*(d for d in got["documents"] or [] if d), *legacy})
