"""The ingestion worker: files -> keywords and caption -> embedding -> Chroma.

Files are streamed in batches. The main thread reads and hashes them, skips what is already
indexed or belongs to another shard, and writes results; each remaining batch is decoded,
described, corrected and embedded on a worker thread, two batches at a time, so that one
batch's embedding and write overlap the next one's generation calls. Memory holds a few
batches and one content id per image seen, never the catalog.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TypeVar

from indexer.config import Settings
from indexer.enrich import Enricher
from indexer.errors import ConfigError, ImageError, ProviderUnavailableError, one_line
from indexer.files import absolute
from indexer.images import (
    MAX_FILE_BYTES,
    SourceImage,
    content_id,
    discover,
    display_path,
    prepare,
    read_source,
)
from indexer.records import Failure, ImageRecord
from indexer.store import ImageStore

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCHES_IN_FLIGHT = 2


@dataclass(frozen=True)
class Shard:
    """Worker K of N (1-based) owns the images whose content id falls in its residue class.

    Ownership depends on the bytes alone, so workers on any machine agree without talking,
    and copies of one image always land on the same worker.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like K/N, e.g. 1/4; got {text!r}") from None
        if not 1 <= k <= n:
            raise ConfigError(f"--shard {text}: K must be between 1 and N")
        return cls(k, n)

    def owns(self, image_id: str) -> bool:
        return int(image_id, 16) % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class RunReport:
    indexed: int = 0
    skipped: int = 0  # already indexed at the same path
    moved: int = 0  # already indexed; only its path was updated
    duplicates: int = 0  # same bytes as another file of this run
    other_shards: int = 0  # left to the other workers
    in_batch_jobs: int = 0  # carried by an open batch job: described there, not here
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    # Why the run stopped early (a quota spent for the day, the API unreachable): what was
    # described is written, the rest stays pending.
    stopped: ProviderUnavailableError | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def seen(self) -> int:
        return (
            self.indexed
            + self.skipped
            + self.moved
            + self.duplicates
            + self.other_shards
            + self.in_batch_jobs
            + self.failed
        )


ProgressFn = Callable[[RunReport], None]


@dataclass
class BatchResult:
    records: list[ImageRecord]
    failures: list[Failure]
    stopped: ProviderUnavailableError | None = None


def path_failure_id(path: Path) -> str:
    """Failure id for a file whose bytes could not be read, so it has no content id."""
    return "path-" + content_id(str(path).encode("utf-8", "surrogateescape"))


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` items (the last one shorter), taken lazily."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Indexer:
    """Walks folders and feeds new images through the enricher into a store opened for
    writing (ImageStore.open(..., write=True) with the enricher's specs)."""

    def __init__(self, settings: Settings, enricher: Enricher, store: ImageStore) -> None:
        self.settings = settings
        self.enricher = enricher
        self.store = store
        self._copies: dict[str, list[str]] = {}  # paths met again within a run, by id

    def run(
        self,
        paths: Sequence[Path],
        on_progress: ProgressFn | None = None,
        shard: Shard | None = None,
        stop: threading.Event | None = None,
        remember: bool = True,
        vanished_ok: bool = False,
    ) -> RunReport:
        """Index everything under `paths`. When `stop` is set, the batches in flight are
        finished and written and the run returns early; what is left stays pending. It
        returns early too when the API becomes unavailable (`report.stopped`: a quota spent
        for the day, its host unreachable), after writing what it had described.
        `remember` records `paths` as catalog folders for `indexer status`; `vanished_ok`
        skips those of `paths` that no longer exist instead of failing the run."""
        started = time.monotonic()
        report = RunReport()
        notify = on_progress or (lambda _report: None)
        in_flight: deque[Future[BatchResult]] = deque()
        pool = ThreadPoolExecutor(BATCHES_IN_FLIGHT, thread_name_prefix="batch")
        # Images an open batch job carries are paid for there: describing them here too
        # would pay twice, and the job's answers would overwrite these records.
        carried = {i for entry in self.store.batches.entries() for i in entry.images}

        def finish(future: Future[BatchResult]) -> None:
            try:
                result = future.result()
                self.write(result, report)
                report.stopped = report.stopped or result.stopped
            finally:
                self.store.release()
            notify(report)

        try:
            for found in self.pending(paths, report, shard, stop, remember, notify, vanished_ok):
                if report.stopped is not None:
                    break  # the batches in flight are written below; nothing more is sent
                pending = [s for s in found if s.id not in carried]
                report.in_batch_jobs += len(found) - len(pending)
                if not pending:
                    continue
                if self.store.switch_waiting():
                    # A reembed waits for writers: write what is paid for, then let it switch.
                    while in_flight:
                        finish(in_flight.popleft())
                # Held from before paying for the batch until it is written (ImageStore.hold).
                self.store.hold()
                in_flight.append(pool.submit(self._process, pending))
                while len(in_flight) >= BATCHES_IN_FLIGHT:
                    finish(in_flight.popleft())
            while in_flight:
                finish(in_flight.popleft())
            self.settle_copies()
        finally:
            for future in in_flight:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            for _ in in_flight:
                self.store.release()
            report.seconds = time.monotonic() - started
        return report

    def pending(
        self,
        paths: Sequence[Path],
        report: RunReport,
        shard: Shard | None = None,
        stop: threading.Event | None = None,
        remember: bool = True,
        notify: ProgressFn = lambda _report: None,
        vanished_ok: bool = False,
    ) -> Iterator[list[SourceImage]]:
        """Walk `paths` and yield, a batch at a time, the images that still need a model:
        known ones are settled (moves recorded), unreadable ones recorded as failures."""
        # Absolute paths: records must make sense to tools run from anywhere else.
        roots = [absolute(p) for p in paths]
        if remember:
            self.store.roots.remember([display_path(r) for r in roots])
        seen: set[str] = set()
        for chunk in batched(discover(roots, vanished_ok), self.settings.batch_size):
            if stop is not None and stop.is_set():
                return
            pending = self._triage(chunk, seen, report, shard)
            notify(report)
            if pending:
                yield pending

    def _triage(
        self, chunk: list[Path], seen: set[str], report: RunReport, shard: Shard | None
    ) -> list[SourceImage]:
        """Settle what is already indexed and return the rest: an unchanged file (same size
        and modification time as recorded) is not even read; others are read and hashed."""
        sources: list[SourceImage] = []
        failures: list[Failure] = []
        recorded = self.store.stats_at([display_path(p) for p in chunk])
        for path in chunk:
            unchanged = _unchanged(path, recorded.get(display_path(path)))
            if unchanged is not None:
                seen.add(unchanged)  # a copy of it elsewhere is a duplicate, not a move
                report.skipped += 1
                continue
            try:
                source = read_source(path, self.settings.max_file_bytes)
            except ImageError as exc:
                failure = Failure(path_failure_id(path), display_path(path), one_line(exc))
                # An unread file has no content id; its path's hash picks its worker.
                if shard is None or shard.owns(failure.id.removeprefix("path-")):
                    failures.append(failure)
                else:
                    report.other_shards += 1
                continue
            if shard is not None and not shard.owns(source.id):
                report.other_shards += 1
                continue
            if source.id in seen:
                report.duplicates += 1
                self._copies.setdefault(source.id, []).append(str(source.path))
                continue
            seen.add(source.id)
            sources.append(source)
        known = self.store.places([s.id for s in sources])
        self._settle(sources, known, report)
        self.fail(failures, report)
        return [s for s in sources if s.id not in known]

    def _settle(
        self, sources: list[SourceImage], known: dict[str, list[str]], report: RunReport
    ) -> None:
        """Known images read again: touched (their stat recorded), copied (a path added
        while one of theirs still holds a file) or moved (none does)."""
        stats: dict[str, tuple[str, int, int]] = {}
        places: dict[str, list[str]] = {}
        cleared: dict[str, tuple[int, int] | None] = {}
        for source in sources:
            path, held = str(source.path), known.get(source.id)
            if held is None:
                continue
            alive = [p for p in held if p != path and os.path.isfile(p)]
            if path == held[0] or not alive:
                stats[source.id] = (path, source.size, source.mtime_ns)
                if path != held[0]:
                    report.moved += 1
                    places[source.id] = [path]  # a move: none of its paths is left
                else:
                    report.skipped += 1
                continue
            if path in held:
                report.skipped += 1  # a copy it knows
                continue
            report.duplicates += 1
            places[source.id] = [*alive, path]
            if alive[0] != held[0]:
                cleared[source.id] = None  # its own file is gone: a copy takes over, unread
        self.store.update_stats({i: s for i, s in stats.items() if i not in places})
        self.store.set_places(
            places, {**cleared, **{i: s[1:] for i, s in stats.items() if i in places}}
        )

    def settle_copies(self) -> None:
        """Record the copies this run met of images it then indexed (or knew)."""
        waiting, self._copies = self._copies, {}
        known = self.store.places(list(waiting))
        places = {
            i: list(dict.fromkeys([*held, *waiting[i]]))
            for i, held in known.items()
            if not set(waiting[i]) <= set(held)
        }
        self.store.set_places(places)

    def _process(self, batch: list[SourceImage]) -> BatchResult:
        """Decode, then enrich, one batch (runs on a worker thread)."""
        result = BatchResult([], [])
        prepared = []
        for source in batch:
            try:
                prepared.append(prepare(source, self.settings.image_max_side))
            except ImageError as exc:
                result.failures.append(Failure(source.id, str(source.path), one_line(exc)))
        outcomes, result.stopped = self.enricher.enrich_until_stopped(prepared)
        for outcome in outcomes:
            if isinstance(outcome, ImageRecord):
                result.records.append(outcome)
            else:
                result.failures.append(outcome)
        return result

    def write(self, result: BatchResult, report: RunReport) -> None:
        """Store finished records and record failures (from either path: online or batch)."""
        self.store.upsert(result.records)
        self.store.failures.clear([r.id for r in result.records], [r.path for r in result.records])
        report.indexed += len(result.records)
        self.fail(result.failures, report)

    def fail(self, failures: list[Failure], report: RunReport) -> None:
        for failure in failures:
            log.warning("failed: %s: %s", failure.path, failure.reason)
        self.store.failures.record(failures)
        report.failures.extend(failures)


def _unchanged(path: Path, recorded: tuple[str, int, int] | None) -> str | None:
    """The record id, if the file at `path` still has the size and mtime recorded for it."""
    if recorded is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    if stat.S_ISREG(info.st_mode) and (info.st_size, info.st_mtime_ns) == recorded[1:]:
        return recorded[0]
    return None


def count_pending(
    store: ImageStore,
    roots: Sequence[Path],
    failed_paths: set[str],
    max_bytes: int = MAX_FILE_BYTES,
) -> int:
    """Images under `roots` that are neither indexed nor recorded as failed."""
    return sum(1 for _ in unindexed(store, roots, failed_paths, max_bytes))


def unindexed(
    store: ImageStore | None,
    roots: Sequence[Path],
    failed_paths: set[str],
    max_bytes: int = MAX_FILE_BYTES,
) -> Iterator[SourceImage | None]:
    """Each image under `roots` that is neither indexed nor among `failed_paths`, once (None
    for a file that cannot be read, which the next run records), writing nothing. With no
    `store` (no collection yet), every image is.

    Paths are looked up first, a chunk at a time: a file whose size and modification time
    match its record is settled unread; only new or changed files are read and hashed, so a
    copy or a moved file of an indexed image does not count either.
    """
    seen: set[str] = set()
    for chunk in batched(discover(roots), 500):
        by_text = {display_path(path): path for path in chunk}
        recorded = store.stats_at(list(by_text)) if store is not None else {}
        sources: dict[str, SourceImage] = {}
        for text, path in by_text.items():
            if text in failed_paths or _unchanged(path, recorded.get(text)) is not None:
                continue  # settled without reading the file
            try:
                source = read_source(path, max_bytes)
            except ImageError:
                yield None
                continue
            if source.id not in seen:
                seen.add(source.id)
                sources[source.id] = source
        known = store.known_paths(list(sources)).keys() if store is not None else set()
        yield from (s for rid, s in sources.items() if rid not in known)
