"""The failure log: the sibling collection `<name>-failures`, one entry per image that could
not be indexed, with its reason. Kept in Chroma so that every worker and every later run sees
it, embedded or on a server; retried images leave it when they are indexed."""

from __future__ import annotations

from collections.abc import Sequence

from indexer.records import Failure
from indexer.store.connection import Sibling, chunks, now, store_errors


class FailureLog(Sibling):
    suffix = "failures"

    @store_errors
    def record(self, failures: Sequence[Failure]) -> None:
        if not failures:
            return
        # One entry an id: Chroma refuses a write that names an id twice.
        latest = list({f.id: f for f in failures}.values())
        # The log needs no vectors; Chroma wants one, so each entry gets a constant.
        self._log.upsert(
            ids=[f.id for f in latest],
            embeddings=[[1.0] for _ in latest],
            documents=[f.reason for f in latest],
            metadatas=[{"path": f.path, "at": f.at or now()} for f in latest],
        )

    @store_errors
    def clear(self, ids: Sequence[str], paths: Sequence[str] = ()) -> None:
        """Forget failures of these ids, and older failures at these paths."""
        for chunk in chunks(list(ids)):
            self._log.delete(ids=list(chunk))
        for chunk in chunks(list(paths)):
            self._log.delete(where={"path": {"$in": list(chunk)}})

    @store_errors
    def all(self) -> list[Failure]:
        got = self._log.get(include=["metadatas", "documents"])
        out = [
            Failure(rid, str((m or {}).get("path", "")), doc or "", str((m or {}).get("at", "")))
            for rid, m, doc in zip(
                got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True
            )
        ]
        return sorted(out, key=lambda f: f.path)
