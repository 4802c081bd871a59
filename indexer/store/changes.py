"""`<name>-changes`: one entry that every write of a catalog's records replaces with a new
token, so that a reader holding a listing of the catalog learns that something changed (a
record added, re-tagged or deleted) with one small read, without reading the records."""

from __future__ import annotations

import uuid

from indexer.store.connection import Sibling, now, store_errors

_ENTRY = "last"


class ChangeMark(Sibling):
    suffix = "changes"

    @store_errors
    def touch(self) -> None:
        self._log.upsert(
            ids=[_ENTRY], embeddings=[[1.0]], metadatas=[{"token": uuid.uuid4().hex, "at": now()}]
        )

    @store_errors
    def token(self) -> str:
        """The last write's token ("" before the first): equal tokens, no write between."""
        got = self._log.get(ids=[_ENTRY], include=["metadatas"])
        metas = got["metadatas"] or []
        return str((metas[0] or {}).get("token", "")) if metas else ""
