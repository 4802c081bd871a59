"""`indexer watch`: keep a collection in step with folders as files come, change and go.

A first pass indexes what is there and forgets records whose files are gone. Then file-system
events (inotify and friends, through watchdog) are collected; a path is handled once it has
been quiet for `settle` seconds, so a photo still being copied is not read half-written.
New and changed files go through the normal pipeline (a moved file only gets its new path);
records of deleted files are removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from indexer.files import absolute
from indexer.images import EXTENSIONS, display_path
from indexer.pipeline import Indexer, RunReport

log = logging.getLogger(__name__)


@dataclass
class WatchReport:
    indexed: int = 0
    removed: int = 0
    failed: int = 0


class _Collector(FileSystemEventHandler):
    """Remembers when each path last changed; folder events mark the folder."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.touched: dict[Path, float] = {}

    def _touch(self, path: str | bytes) -> None:
        p = Path(path.decode() if isinstance(path, bytes) else path)
        with self.lock:
            self.touched[p] = time.monotonic()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            # A folder is "modified" whenever a file in it changes; that file has its own
            # event, and re-reading the whole folder each time would hash it again and again.
            return
        self._touch(event.src_path)
        if event.dest_path:
            self._touch(event.dest_path)

    def settled(self, quiet: float) -> list[Path]:
        now = time.monotonic()
        with self.lock:
            due = [p for p, t in self.touched.items() if now - t >= quiet]
            for p in due:
                del self.touched[p]
        return due


class Watcher:
    def __init__(
        self,
        indexer: Indexer,
        roots: Sequence[Path],
        settle: float = 1.0,
        on_change: Callable[[str, WatchReport], None] | None = None,
    ) -> None:
        self.indexer = indexer
        self.roots = [absolute(r) for r in roots]
        self.settle = settle
        self.report = WatchReport()
        self._notify = on_change or (lambda _what, _report: None)

    def run(self, stop: threading.Event) -> WatchReport:
        """Sync, then follow changes until `stop` is set; the image in hand is finished."""
        collector = _Collector()
        observer = Observer()
        for root in self.roots:
            observer.schedule(collector, str(root), recursive=True)
        observer.start()  # before the first pass, so nothing that changes during it is missed
        try:
            self._index(self.roots, stop, remember=True)
            self._forget_under(self.roots)
            self._notify("ready", self.report)
            while not stop.wait(min(0.25, self.settle)):
                due = collector.settled(self.settle)
                if due:
                    self._handle(due, stop)
        finally:
            observer.stop()
            observer.join()
        return self.report

    def _handle(self, paths: list[Path], stop: threading.Event) -> None:
        paths = [p for p in paths if not self._through_link(p)]
        files = [p for p in paths if p.is_file() and p.suffix.lower() in EXTENSIONS]
        # A link to a folder is not walked, as `indexer run` walks none: `ln -s . loop`
        # would index the folder again under loop/, and `rm loop` then forget it all.
        folders = [p for p in paths if p.is_dir() and not p.is_symlink()]
        gone = [p for p in paths if not p.exists()]
        # New and moved-in files first: a moved image's record then already carries its new
        # path when the old path is forgotten.
        if files or folders:
            self._index([*files, *folders], stop)
        gone_files = [p for p in gone if p.suffix.lower() in EXTENSIONS]
        if gone_files:
            self._removed(self.indexer.store.remove_paths([display_path(p) for p in gone_files]))
        gone_folders = [p for p in gone if p.suffix.lower() not in EXTENSIONS]
        if gone_folders:
            self._forget_under(gone_folders)

    def _through_link(self, path: Path) -> bool:
        """Whether `path` lies below a linked folder inside a watched root (an event the
        observer reported through the link)."""
        root = next((r for r in self.roots if path.is_relative_to(r)), None)
        if root is None:
            return False
        return any(p.is_symlink() for p in path.parents if p != root and p.is_relative_to(root))

    def _index(self, paths: Sequence[Path], stop: threading.Event, remember: bool = False) -> None:
        # A file may go again before its turn: its deletion is an event of its own.
        run: RunReport = self.indexer.run(paths, stop=stop, remember=remember, vanished_ok=True)
        self.report.indexed += run.indexed
        self.report.failed += run.failed
        if run.indexed or run.moved or run.failed:
            self._notify("indexed", self.report)
        if run.stopped is not None:
            raise run.stopped  # a quota or an unreachable API: watching on would fail all

    def _forget_under(self, folders: Sequence[Path]) -> None:
        """Remove records whose file no longer exists under `folders`, found through the
        store's folder index rather than a scan of the whole collection."""
        store = self.indexer.store
        stale = [
            path
            for folder in folders
            for path in store.paths_under(display_path(folder))
            if not Path(path).exists()
        ]
        if stale:
            self._removed(store.remove_paths(stale))

    def _removed(self, count: int) -> None:
        if count:
            self.report.removed += count
            self._notify("removed", self.report)
