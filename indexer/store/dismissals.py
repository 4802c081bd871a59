"""Pairs someone said are not duplicates: the sibling collection `<name>-dismissed`, one entry
per pair (two record ids, or two paths of one record), so that `indexer duplicates` never
reports them again, across runs and re-indexing (a record's id is its bytes' hash)."""

from __future__ import annotations

import hashlib

from indexer.store.connection import Sibling, now, store_errors


class Dismissals(Sibling):
    suffix = "dismissed"

    @staticmethod
    def _id(a: str, b: str) -> str:
        first, second = sorted((a, b))
        return hashlib.sha256(f"{first}\n{second}".encode()).hexdigest()[:32]

    @store_errors
    def dismiss(self, a: str, b: str) -> None:
        first, second = sorted((a, b))
        self._log.upsert(
            ids=[self._id(a, b)],
            embeddings=[[1.0]],
            metadatas=[{"a": first, "b": second, "at": now()}],
        )

    @store_errors
    def pairs(self) -> set[frozenset[str]]:
        got = self._log.get(include=["metadatas"])
        return {
            frozenset((str(m.get("a", "")), str(m.get("b", ""))))
            for m in got["metadatas"] or []
            if m
        }
