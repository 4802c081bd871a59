"""Where a catalog's images are: each record's paths (the first is its own, the others hold
the same bytes: exact duplicates), kept in step with the files.

A file whose bytes a record already has is a copy while one of the record's paths still
holds a file, and a move when none does; a record loses a path when its file goes, and is
forgotten only with its last one. A record whose own path is gone takes its first surviving
copy as its own, with its size and time cleared, so that the next run reads it once rather
than trusting a file it never checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager

from indexer.store import keys, schema
from indexer.store.connection import chunks, store_errors
from indexer.store.search import StoreSearch

Stat = tuple[int, int]  # size, mtime_ns

# Chroma Cloud takes at most 8 predicates a filter: copies are looked up this many at a time.
_PER_FILTER = 8


class StorePaths(StoreSearch):
    def _held(self) -> AbstractContextManager[None]:
        raise NotImplementedError  # ImageStore: the writer's hold

    def _delete(self, ids: Sequence[str]) -> None:
        raise NotImplementedError

    @store_errors
    def places(self, ids: Sequence[str]) -> dict[str, list[str]]:
        """Each indexed id's paths: its own first, then its copies."""
        found: dict[str, list[str]] = {}
        for chunk in chunks(list(ids)):
            got = self._collection.get(ids=list(chunk), include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = _places(meta or {})
        return found

    @store_errors
    def holding(self, path: str) -> str | None:
        """The id of the record that has `path`, as its own or as a copy."""
        return next(iter(self._records_at([path])), None) or next(self._copies_at([path]), None)

    @store_errors
    def update_stats(self, stats: Mapping[str, tuple[str, int, int]]) -> None:
        """Record (path, size, mtime_ns) for records (by id) whose own file was read again."""
        if stats:
            self.set_places(
                {i: [path] for i, (path, _, _) in stats.items()},
                {i: (size, mtime) for i, (_, size, mtime) in stats.items()},
                keep_copies=True,
            )

    @store_errors
    def set_places(
        self,
        places: Mapping[str, Sequence[str]],
        stats: Mapping[str, Stat | None] | None = None,
        keep_copies: bool = False,
    ) -> None:
        """Give records (by id) these paths, their own first; with `stats`, the size and
        time of their own file (None clears them: read it on the next run). With
        `keep_copies`, the copies recorded stay after the paths given."""
        if not places:
            return
        with self._held():
            ids = list(places)
            known = self.places(ids) if keep_copies else {}
            metadatas = []
            for rid in ids:
                paths = list(dict.fromkeys([*places[rid], *known.get(rid, [])[1:]]))
                meta: dict[str, object] = {
                    keys.PATH: paths[0],
                    schema.FOLDERS: schema.folders_of(*paths),
                    keys.COPIES: paths[1:] or None,
                }
                if stats is not None and rid in stats:
                    stat = stats[rid]
                    meta[keys.SIZE] = stat[0] if stat else None
                    meta[keys.MTIME_NS] = stat[1] if stat else None
                metadatas.append(meta)
            self._collection.update(ids=ids, metadatas=metadatas)
            self.changes.touch()

    @store_errors
    def remove_paths(self, paths: Sequence[str]) -> int:
        """Forget these paths (their files are gone): a record keeps its other paths whose
        files are there, and goes with its last one. Returns how many records went."""
        gone = set(paths)
        with self._held():
            ids = set(self._records_at(paths)) | set(self._copies_at(paths))
            kept: dict[str, list[str]] = {}
            cleared: dict[str, Stat | None] = {}
            dropped = []
            for rid, places in self.places(list(ids)).items():
                left = [p for p in places if p not in gone and os.path.isfile(p)]
                if not left:
                    dropped.append(rid)
                    continue
                kept[rid] = left
                if left[0] != places[0]:
                    cleared[rid] = None  # a copy becomes its own: never checked, so read again
            self._delete(dropped)
            self.set_places(kept, cleared)
            if dropped:
                self.changes.touch()
        self.failures.clear((), paths)
        return len(dropped)

    @store_errors
    def set_likeness(self, found: Mapping[str, str]) -> None:
        """Store pictures' fingerprints (likeness.py) for records made before they were."""
        if found:
            with self._held():
                ids = list(found)
                self._collection.update(ids=ids, metadatas=[{keys.LIKENESS: found[i]} for i in ids])

    def _copies_at(self, paths: Sequence[str]) -> Iterator[str]:
        """Ids of the records that hold any of `paths` as a copy."""
        for start in range(0, len(paths), _PER_FILTER):
            terms = [{keys.COPIES: {"$contains": p}} for p in paths[start : start + _PER_FILTER]]
            where = terms[0] if len(terms) == 1 else {"$or": terms}
            yield from self._collection.get(where=where, include=[])["ids"]


def _places(meta: Mapping[str, object]) -> list[str]:
    copies = meta.get(keys.COPIES)
    others = [str(p) for p in copies] if isinstance(copies, list) else []
    return [str(meta.get(keys.PATH, "")), *others]
