"""Vector searches that see what other processes wrote since.

An embedded Chroma engine loads a collection's vector index once and keeps it: records
another process (`indexer run`, `indexer watch`) writes afterwards are in its metadata but
never in its searches. So on the embedded store, searches run on an engine of their own,
opened anew when the catalog's change mark (or its size) moved: in the background, warmed by
the search that noticed, while the previous engine keeps answering; the old engine closes
once its last search is done. A Chroma server is one engine for every process: its searches
run on the client's store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from indexer.config import Settings
from indexer.errors import StoreError

if TYPE_CHECKING:
    from indexer.store import ImageStore
    from query.planner import Planner

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Engine:
    """A store to search and its planner; `main` is the client's store it was opened for."""

    main: ImageStore
    store: ImageStore
    planner: Planner
    mark: str  # the change mark when it was opened: later writes are not in its indexes
    size: int
    own: bool  # an engine of its own, to disconnect once retired
    uses: int = 0
    retired: bool = False


class Searchers:
    """The engine searches run on, kept as fresh as the catalog allows; see the module."""

    LOOK_EVERY = 1.0  # seconds at least between looks at the change mark

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._current: Engine | None = None
        self._looked = 0.0  # when the change mark was last read
        self._took = 0.0  # how long opening and warming the last engine took
        self._opening = False

    @contextmanager
    def engine(self, main: ImageStore, vector: Sequence[float], pictures: bool) -> Iterator[Engine]:
        """The engine for one search by `vector` (which warms a new engine, if one opens)."""
        engine = self._take(main, vector, pictures)
        try:
            yield engine
        finally:
            with self._lock:
                engine.uses -= 1
                if engine.retired and engine.uses == 0:
                    self._close(engine)

    def planner(self, main: ImageStore) -> Planner:
        """The current engine's planner (for benchmarks and `untagged`)."""
        with self._lock:
            return self._fresh_current(main).planner

    def forget(self) -> None:
        """Drop the engine: the collection was replaced (a finished `indexer reembed`)."""
        with self._lock:
            if self._current is not None:
                self._retire(self._current)
            self._current = None

    def _take(self, main: ImageStore, vector: Sequence[float], pictures: bool) -> Engine:
        with self._lock:
            engine = self._fresh_current(main)
            if engine.own and self._stale(engine) and not self._opening:
                self._opening = True
                threading.Thread(
                    target=self._open_anew,
                    args=(engine, list(vector), pictures),
                    name="search-engine",
                    daemon=True,
                ).start()
            engine.uses += 1
            return engine

    def _fresh_current(self, main: ImageStore) -> Engine:
        """The current engine, opened first if there is none for `main`. Holding the lock."""
        if self._current is not None and self._current.main is main:
            return self._current
        if self._current is not None:
            self._retire(self._current)
        self._current = self._opened(main)
        self._looked = time.monotonic()
        return self._current

    def _opened(self, main: ImageStore) -> Engine:
        from indexer.store import ImageStore
        from query.planner import Planner

        if self._settings.uses_server:
            return Engine(main, main, Planner(main), "", 0, own=False)
        mark, size = main.changes.token(), main.count()  # before: a write meanwhile shows next
        store = ImageStore.open(self._settings, own_engine=True)
        return Engine(main, store, Planner(store), mark, size, own=True)

    def _stale(self, engine: Engine) -> bool:
        """Whether another process wrote since `engine` opened; looked at no more often than
        every LOOK_EVERY seconds, nor than ten times what opening an engine takes."""
        now = time.monotonic()
        if now - self._looked < max(self.LOOK_EVERY, 10 * self._took):
            return False
        self._looked = now
        # The size too: a writer killed between its records and the mark moved only that.
        return engine.main.changes.token() != engine.mark or engine.main.count() != engine.size

    def _open_anew(self, old: Engine, vector: list[float], pictures: bool) -> None:
        started = time.monotonic()
        try:
            fresh = self._opened(old.main)
            try:
                fresh.planner.nearest(vector, 1, {}, pictures)  # loads the index now
            except StoreError:
                fresh.store.disconnect()
                raise
        except StoreError as exc:
            log.warning("opening the store anew failed (%s); searches stay on the last", exc)
            with self._lock:
                self._opening = False
            return
        with self._lock:
            self._opening = False
            self._took = time.monotonic() - started
            if self._current is not old:  # forgotten meanwhile: the collection was replaced
                self._close(fresh)
                return
            self._retire(old)
            self._current = fresh

    def _retire(self, engine: Engine) -> None:
        engine.retired = True
        if engine.uses == 0:
            self._close(engine)

    @staticmethod
    def _close(engine: Engine) -> None:
        if engine.own:
            engine.store.disconnect()

    def close(self) -> None:
        self.forget()
