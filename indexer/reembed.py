"""`indexer reembed`: move a collection to the configured embedding model without describing
any image again. Stored keywords and captions are embedded anew ("keywords. caption", as at
ingestion), and the pictures too where the new model or the local image model embeds images.

New vectors are staged beside the old collection, which keeps answering queries; the switch
happens only when every record is staged. Killed at any point, a re-run resumes: staged
records are skipped, and a half-done switch is finished.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from indexer.enrich import Enricher
from indexer.images import reread
from indexer.records import EmbeddingSpec
from indexer.store import ImageStore


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
) -> ReembedReport:
    """Re-embed every record of `store` (opened exclusively) with `enricher`'s models."""
    started = time.monotonic()
    report = ReembedReport(store.spec, enricher.spec, records=store.count())
    staging = store.staging(enricher.spec, enricher.image_spec)
    notify = on_progress or (lambda _report: None)
    records = store.records()
    while chunk := list(islice(records, page)):
        if stop is not None and stop.is_set():
            break
        done = staging.staged([r.id for r in chunk])
        report.resumed += len(done)
        todo = [r for r in chunk if r.id not in done]
        pictures = (
            [reread(Path(r.path), r.id, max_side, max_bytes) for r in todo]
            if enricher.pictures
            else []
        )
        report.pictures_missing += sum(p is None for p in pictures)
        report.pictures += sum(p is not None for p in pictures)
        staging.write(
            enricher.reembed(todo, pictures or [None] * len(todo)),
            [str(r.metadata.get("indexed_at", "")) for r in todo],
        )
        report.reembedded += len(todo)
        notify(report)
    if staging.count() >= report.records and not (stop is not None and stop.is_set()):
        staging.switch()
        report.switched = True
    report.seconds = time.monotonic() - started
    return report
