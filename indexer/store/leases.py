"""Writer leases and the switch fence: how `indexer reembed` switches a catalog on a Chroma
server without losing what other workers write meanwhile.

On an embedded store the writer lock keeps every other writer out. A Chroma server has no
lock, so writers and a switch meet in Chroma itself, and each announces itself before it
looks for the other:

- a writer holds a lease (an entry in `<name>-writers`) from before it pays for a batch
  until the batch is written; it takes one only after finding no fence up;
- a reembed about to switch puts up a fence (on its staging collection `<name>--next`),
  then waits until no lease is left, stages what was written meanwhile, and switches.

Since each side writes its own mark before reading the other's, at least one of them sees
the other: a writer that finds the fence withdraws and waits for the switch to end; a fence
that finds a lease waits for it to be released. Both marks carry a counter their owner
advances every few seconds. An observer judges a mark dead when its counter has stood still
for `stale_after` seconds of the observer's own clock, so the machines' clocks need not
agree and a killed process blocks nobody for long.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from indexer.store import keys
from indexer.store.connection import Sibling, store_errors
from indexer.store.layout import NEXT, find

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

log = logging.getLogger(__name__)

FENCE = keys.SWITCH_FENCE
BEAT_SECONDS = 5.0
STALE_AFTER = 60.0
POLL_SECONDS = 0.5


class Pulse:
    """Calls `beat` every `seconds` on a daemon thread until stopped."""

    def __init__(self, beat: Callable[[], None], seconds: float) -> None:
        self._beat = beat
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                self._beat()
            except Exception as exc:  # a missed beat is retried; the owner keeps working
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Liveness:
    """Judges other processes' marks: alive while their counters move."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_after = stale_after
        self._clock = clock
        self._seen: dict[str, tuple[object, float]] = {}

    def alive(self, key: str, counter: object) -> bool:
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None or seen[0] != counter:
            self._seen[key] = (counter, now)
            return True
        return now - seen[1] < self._stale_after


def fence_of(client: ClientAPI, catalog: str) -> object | None:
    """The mark of the fence up on `catalog` (its switch's token and heartbeat counter),
    or None when writes are open."""
    staged = find(client, catalog + NEXT)
    return None if staged is None else (staged.metadata or {}).get(FENCE)


class WriterLeases(Sibling):
    """This process's lease on a catalog, and the list of everyone's."""

    suffix = "writers"

    def __init__(
        self,
        client: ClientAPI,
        name: str,
        location: str,
        retry_seconds: float,
        beat_seconds: float = BEAT_SECONDS,
        stale_after: float = STALE_AFTER,
    ) -> None:
        super().__init__(client, name, location, retry_seconds)
        self.id = uuid.uuid4().hex
        self.beat_seconds = beat_seconds
        self.stale_after = stale_after
        self._depth = 0
        self._counter = 0
        self._pulse: Pulse | None = None
        self._guard = threading.Lock()  # one hold taken or released at a time
        # Kept across holds: a fence judged dead (a killed reembed) stays judged, rather
        # than being waited out again before every batch.
        self._fences = Liveness(stale_after)

    def fenced(self) -> bool:
        """Whether a live switch is waiting for writers to let go."""
        mark = fence_of(self._client, self.collection)
        return mark is not None and self._fences.alive("fence", mark)

    def enter(self) -> bool:
        """Take one hold on the lease (holds nest). The first hold waits while a switch
        is fenced; returns True when it waited, as the collections may since have been
        replaced."""
        with self._guard:
            if self._depth:
                self._depth += 1
                return False
            return self._first_hold()

    def _first_hold(self) -> bool:
        waited = False
        while True:
            self._announce()
            if not self.fenced():
                break
            self._withdraw()
            if not waited:
                log.warning(
                    "catalog %r is being switched by `indexer reembed`; waiting", self.collection
                )
            waited = True
            time.sleep(POLL_SECONDS)
        self._depth = 1
        self._pulse = Pulse(self._announce, self.beat_seconds)
        return waited

    def leave(self) -> None:
        """Release one hold; the last one withdraws the lease."""
        with self._guard:
            self._depth -= 1
            if self._depth:
                return
            if self._pulse is not None:
                self._pulse.stop()
                self._pulse = None
            self._withdraw()

    @store_errors
    def _announce(self) -> None:
        self._counter += 1
        self._log.upsert(ids=[self.id], embeddings=[[1.0]], metadatas=[{"beat": self._counter}])

    @store_errors
    def _withdraw(self) -> None:
        self._log.delete(ids=[self.id])

    @store_errors
    def held(self) -> dict[str, Any]:
        """Every lease entry: writer id -> its counter (live or not)."""
        if find(self._client, self.name) is None:
            return {}
        got = self._log.get(include=["metadatas"])
        return {
            i: (m or {}).get("beat")
            for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)
        }

    def wait_until_free(self, seconds: float) -> bool:
        """Wait until no live lease is left (dead ones are removed); False after `seconds`."""
        leases = Liveness(self.stale_after)
        deadline = time.monotonic() + seconds
        while True:
            held = self.held()
            dead = [i for i, counter in held.items() if not leases.alive(i, counter)]
            if dead:
                log.warning("removing %d writer leases of stopped processes", len(dead))
                self._log.delete(ids=dead)
            if len(dead) == len(held):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
