"""Who may write a catalog: on an embedded store, one process at a time (a file lock); on a
Chroma server, any number of workers, each holding a lease while it writes so that a
reembed's switch never leaves their writes behind (store/leases.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.errors import StoreBusyError
from indexer.store.leases import WriterLeases


class WriterGuard:
    """The writer lock of an embedded store (`lock_path`), or the leases of a server's."""

    def __init__(self, location: str, lock_path: Path | None, leases: WriterLeases | None) -> None:
        self.location = location
        self._lock_path = lock_path
        self._leases = leases
        self._lock: Any = None  # filelock.FileLock while held

    @property
    def shared(self) -> bool:
        """Whether other processes may write while this one does (a Chroma server)."""
        return self._leases is not None

    @property
    def locked(self) -> bool:
        return self._lock is not None

    def lock(self) -> None:
        """One writer per embedded store: two processes would each index everything.

        A Chroma server serialises writes itself, so shard workers share one instead."""
        if self._lock_path is None or self._lock is not None:
            return
        from filelock import FileLock, Timeout

        lock = FileLock(self._lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise StoreBusyError(
                f"the store at {self.location} is busy: another indexer process is writing "
                "to it; wait for it to finish, or run several workers against a Chroma "
                "server (chroma run --path DIR, then CHROMA_HOST=... indexer run --shard K/N)"
            ) from None
        self._lock = lock

    def try_lock(self) -> bool:
        try:
            self.lock()
        except StoreBusyError:
            return False
        return True

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def enter(self) -> bool:
        """Take a lease hold on a server; True when it had to wait for a switch."""
        return self._leases is not None and self._leases.enter()

    def leave(self) -> None:
        if self._leases is not None:
            self._leases.leave()

    def fenced(self) -> bool:
        """Whether a reembed waits for writers to let go before switching."""
        return self._leases is not None and self._leases.fenced()
