"""`indexer reembed`: move a collection to the configured embedding model without describing
any image again. Stored keywords and captions are embedded anew ("keywords. caption", as at
ingestion), and the pictures too where the new model or the local image model embeds images.

New vectors are staged beside the old collection, which keeps answering queries; the switch
happens only when the staged copy matches the live records. Killed at any point, a re-run
resumes: staged records that still match theirs are skipped, and a half-done switch is
finished. Between a kill and the resume, or on a Chroma server while it runs, the live
collection may change: each pass re-stages records whose caption, keywords, path or file
changed, stages new ones and drops staged ones deleted since, and passes repeat until one
finds nothing to do. Then the catalog is closed to writers (on a server: a fence, waiting
for every writer to release its hold, store/leases.py), one last pass stages what they
wrote meanwhile, and the switch happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from indexer.enrich import Enricher
from indexer.errors import StoreBusyError
from indexer.images import reread
from indexer.records import EmbeddingSpec, StoredRecord
from indexer.store import ImageStore, keys
from indexer.store.staging import Staging

# What must match between a live record and its staged copy; the rest is the models' own.
_MATCHED = (keys.PATH, keys.SIZE, keys.MTIME_NS)
MAX_PASSES = 5
WRITERS_WAIT = 300.0  # seconds a fence waits for writers to finish their batches


@dataclass
class ReembedReport:
    source: EmbeddingSpec
    target: EmbeddingSpec
    records: int = 0  # in the collection
    reembedded: int = 0  # by this run
    resumed: int = 0  # staged by an earlier, interrupted run
    pictures: int = 0  # image vectors made
    pictures_missing: int = 0  # files gone or changed: record kept, without an image vector
    switched: bool = False
    seconds: float = 0.0


def reembed(
    store: ImageStore,
    enricher: Enricher,
    max_side: int,
    max_bytes: int,
    page: int = 64,
    on_progress: Callable[[ReembedReport], None] | None = None,
    stop: threading.Event | None = None,
    writers_wait: float = WRITERS_WAIT,
) -> ReembedReport:
    """Re-embed every record of `store` (opened exclusively) with `enricher`'s models.

    Raises StoreBusyError, keeping what is staged, when other writers kept the catalog
    changing through every pass."""
    started = time.monotonic()
    report = ReembedReport(store.spec, enricher.spec, records=store.count())
    staging = store.staging(enricher.spec, enricher.image_spec)
    notify = on_progress or (lambda _report: None)

    def sync(attempt: int) -> int:
        limits = (max_side, max_bytes)
        return _sync(store, staging, enricher, limits, page, report, notify, stop, attempt)

    for attempt in range(MAX_PASSES):
        changed = sync(attempt)
        if stop is not None and stop.is_set():
            break
        if changed and attempt < MAX_PASSES - 1:
            continue
        # On an embedded store the writer lock already keeps every other writer out.
        if store.shared and not staging.fence(writers_wait):
            continue
        try:
            if store.shared:
                sync(attempt + 1)  # what was written before the fence; nothing is written now
            if stop is not None and stop.is_set():
                break
            report.records = store.count()
            staging.switch()
            report.switched = True
        finally:
            if not report.switched:
                staging.unfence()
        break
    else:
        raise StoreBusyError(
            f"other writers kept catalog {store.name!r} busy through {MAX_PASSES} passes; "
            "what is staged is kept: run `indexer reembed` again when they are done"
        )
    report.seconds = time.monotonic() - started
    return report


def _stale(record: StoredRecord, staged: tuple[dict[str, object], str]) -> bool:
    meta, caption = staged
    return caption != record.caption or any(meta.get(k) != record.metadata.get(k) for k in _MATCHED)


def _sync(
    store: ImageStore,
    staging: Staging,
    enricher: Enricher,
    limits: tuple[int, int],
    page: int,
    report: ReembedReport,
    notify: Callable[[ReembedReport], None],
    stop: threading.Event | None,
    attempt: int,
) -> int:
    """One pass over the live records: stage what is missing or stale, drop what is
    deleted. Returns how many staged records it changed."""
    changed = 0
    live: set[str] = set()
    records = store.records()
    while chunk := list(islice(records, page)):
        if stop is not None and stop.is_set():
            return changed
        live.update(r.id for r in chunk)
        staged = staging.staged([r.id for r in chunk])
        todo = [r for r in chunk if r.id not in staged or _stale(r, staged[r.id])]
        if attempt == 0:  # staged by an earlier run, not by this run's first pass
            report.resumed += sum(1 for r in chunk if r.id in staged and r not in todo)
        pictures = [reread(Path(r.path), r.id, *limits) for r in todo] if enricher.pictures else []
        report.pictures_missing += sum(p is None for p in pictures)
        report.pictures += sum(p is not None for p in pictures)
        staging.write(
            enricher.reembed(todo, pictures or [None] * len(todo)),
            [str(r.metadata.get(keys.INDEXED_AT, "")) for r in todo],
        )
        report.reembedded += len(todo)
        changed += len(todo)
        notify(report)
    return changed + staging.drop_except(live)
