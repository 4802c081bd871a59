"""What indexing a collection has cost: the sibling collection `<name>-usage`, one entry per
run (tokens and requests). One entry per run rather than one running total, so shard workers
on a server add their runs without overwriting each other's."""

from __future__ import annotations

from indexer.records import Usage
from indexer.store.connection import Sibling, now, store_errors


class UsageLog(Sibling):
    suffix = "usage"

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
