"""The collection newest first, as browsing pages through it: one snapshot of every record's
id, time and keywords, with one bit array per keyword, so that a page under any filters, how
many records match and every keyword's count among them are a few array operations, not a
pass over the records in Python."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.errors import StoreError
from indexer.files import atomic_write
from indexer.records import Listed
from indexer.vocabulary import FilterLike, Filters

if TYPE_CHECKING:
    import numpy as np

    from indexer.store import ImageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Browsed:
    """What a page of browsing needs from the listing: the ids to read, newest first."""

    total: int
    ids: list[str]
    counts: dict[str, dict[str, int]]


class Listing:
    """An immutable snapshot; a newer one replaces it whole."""

    def __init__(self, ids: list[str], bits: dict[tuple[str, str], np.ndarray]) -> None:
        import numpy as np  # here: importing the query client stays light

        self.ids = ids  # newest first
        self.size = len(ids)
        self._bits = bits  # one packed bit a record, in listing order, per keyword
        self._all = _by_facet({k: int(np.bitwise_count(b).sum()) for k, b in bits.items()})

    @classmethod
    def of(cls, listed: Sequence[Listed]) -> Listing:
        import numpy as np

        ordered = sorted(listed, key=lambda r: (r.indexed_at, r.id), reverse=True)
        rows: dict[tuple[str, str], list[int]] = defaultdict(list)
        for row, record in enumerate(ordered):
            for facet, words in record.keywords.items():
                for word in words:
                    rows[(facet, word)].append(row)
        bits = {}
        for key, members in rows.items():
            mask = np.zeros(len(ordered), dtype=bool)
            mask[members] = True
            bits[key] = np.packbits(mask)
        return cls([r.id for r in ordered], bits)

    def save(self, path: Path) -> None:
        """Written whole or not at all, for the next start (`load`)."""
        import numpy as np

        keys = list(self._bits)
        width = (self.size + 7) // 8
        with atomic_write(path) as tmp, tmp.open("wb") as out:
            np.savez(
                out,
                ids=np.array(self.ids, dtype="S"),  # content ids: hex, a byte a character
                facets=np.array([f for f, _ in keys], dtype=str),
                words=np.array([w for _, w in keys], dtype=str),
                bits=np.stack([self._bits[k] for k in keys])
                if keys
                else np.zeros((0, width), np.uint8),
            )

    @classmethod
    def load(cls, path: Path) -> Listing | None:
        """The listing `save` wrote, or None when there is none (or it does not hold up)."""
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as saved:
                ids = saved["ids"].astype(str).tolist()
                facets, words, bits = saved["facets"], saved["words"], saved["bits"]
                if bits.shape != (len(facets), (len(ids) + 7) // 8) or len(words) != len(facets):
                    return None
                keyed = zip(facets, words, bits, strict=True)
                return cls(ids, {(str(f), str(w)): b for f, w, b in keyed})
        except (OSError, ValueError, KeyError):
            return None

    def page(self, filters: FilterLike, limit: int, offset: int) -> Browsed:
        import numpy as np

        given = Filters.of(filters)
        if not given:
            return Browsed(self.size, self.ids[offset : offset + limit], self._all)
        if any(term not in self._bits for term in given.required):
            return Browsed(0, [], {})  # a keyword no record has
        matching = np.packbits(np.ones(self.size, dtype=bool))  # padding bits stay clear
        for term in given.required:
            matching &= self._bits[term]
        for term in given.excluded:
            if term in self._bits:
                matching &= ~self._bits[term]
        total = int(np.bitwise_count(matching).sum())
        counts = {
            key: int(np.bitwise_count(bits & matching).sum()) for key, bits in self._bits.items()
        }
        rows = np.flatnonzero(np.unpackbits(matching, count=self.size))[offset : offset + limit]
        return Browsed(
            total, [self.ids[i] for i in rows], _by_facet({k: n for k, n in counts.items() if n})
        )


class Listings:
    """The listing last read of a store, kept current without making pages wait: once a
    writer has written the catalog since (its change mark, store/changes.py, or its size
    moved), a listing is read again, at most once every ten times as long as the last read took (at
    least a second apart), so re-reading takes at most a tenth of the server's time however
    fast a writer writes. A read that took under half a second is done at once, for the page
    that asked; a longer one in the background, while pages get the last listing."""

    QUICK = 0.5  # seconds: a read this short is done for the page that asked

    def __init__(self, saved: Path | None = None) -> None:
        self._saved = saved  # a folder where the last listing of each collection is kept
        self._lock = threading.Lock()
        # whose listing, when it was read, how long that took, the change mark then, it
        self._last: tuple[ImageStore, float, float, str, Listing] | None = None
        self._reading = False

    def current(self, store: ImageStore) -> Listing:
        with self._lock:
            last = self._last
            if last is None or last[0] is not store:
                kept = self._kept(store)
                if kept is None:
                    return self._read_now(store)
                # A start answers from the listing kept by the last run at once, and reads
                # the collection again meanwhile: whatever changed since shows after it.
                self._last = (store, time.monotonic(), 0.0, "", kept)
                self._reading = True
                listing = kept
            else:
                _, at, took, mark, listing = last
                if self._reading or time.monotonic() - at < max(1.0, 10 * took):
                    return listing
                # The size too: a writer killed between its records and the mark moved the
                # size, though not the mark.
                if store.changes.token() == mark and store.count() == listing.size:
                    self._last = (store, time.monotonic(), took, mark, listing)
                    return listing
                if took < self.QUICK:
                    return self._read_now(store)
                self._reading = True
        threading.Thread(target=self._read, args=(store,), name="listing", daemon=True).start()
        return listing

    def forget(self) -> None:
        with self._lock:
            self._last = None

    def _path(self, store: ImageStore) -> Path | None:
        return None if self._saved is None else self._saved / f"{store.collection_id}.npz"

    def _kept(self, store: ImageStore) -> Listing | None:
        path = self._path(store)
        return Listing.load(path) if path is not None and path.is_file() else None

    def _keep(self, store: ImageStore, listing: Listing) -> None:
        path = self._path(store)
        if path is not None:
            try:
                listing.save(path)
            except (OSError, UnicodeEncodeError) as exc:  # a cache: the next start reads
                log.warning("cannot keep the listing in %s: %s", path, exc)

    def _read_now(self, store: ImageStore) -> Listing:
        started = time.monotonic()
        mark = store.changes.token()  # before the read: a write during it shows next time
        listing = Listing.of(store.listing())
        self._last = (store, time.monotonic(), time.monotonic() - started, mark, listing)
        self._keep(store, listing)
        return listing

    def _read(self, store: ImageStore) -> None:
        try:
            started = time.monotonic()
            mark = store.changes.token()
            fresh = Listing.of(store.listing())
            took = time.monotonic() - started
            with self._lock:
                if self._last is not None and self._last[0] is store:
                    self._last = (store, time.monotonic(), took, mark, fresh)
            self._keep(store, fresh)
        except StoreError as exc:
            log.warning("reading the listing again failed (%s); the last one stays", exc)
        finally:
            with self._lock:
                self._reading = False


def _by_facet(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (facet, word), n in counts.items():
        out.setdefault(facet, {})[word] = n
    return out
