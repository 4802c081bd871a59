"""What indexing a collection has cost: the sibling collection `<name>-usage`, one entry per
run (tokens and requests). One entry per run rather than one running total, so shard workers
on a server add their runs without overwriting each other's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from indexer.records import Usage
from indexer.store.connection import now, store_errors

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


class UsageLog:
    def __init__(self, client: ClientAPI, name: str, location: str, retry_seconds: float) -> None:
        self._client = client
        self.name = f"{name}-usage"
        self.location = location
        self.retry_seconds = retry_seconds
        self._collection: Collection | None = None

    @property
    def _log(self) -> Collection:
        if self._collection is None:
            self._collection = self._client.get_or_create_collection(
                self.name, embedding_function=None
            )
        return self._collection

    @store_errors
    def record(self, run_id: str, usage: Usage) -> None:
        """Add (or update: a run may record as it goes) the usage of run `run_id`."""
        counts = usage.as_dict()
        if not any(counts.values()):
            return
        self._log.upsert(ids=[run_id], embeddings=[[1.0]], metadatas=[{**counts, "at": now()}])

    @store_errors
    def totals(self) -> tuple[Usage, int]:
        """Usage summed over every run, and the number of runs."""
        got = self._log.get(include=["metadatas"])
        total = Usage()
        for meta in got["metadatas"] or []:
            total.add(**{k: v for k, v in Usage.from_dict(meta or {}).as_dict().items()})
        return total, len(got["ids"])
