"""Creating batch jobs under the batch log's discipline (store/batches.py): every job is
recorded under a display name of its own before it is created and named right after, so that
no crash, timeout or refusal makes one twice or loses what it carries."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from indexer.batch_collection import Collector, held
from indexer.enrich import Tagged
from indexer.errors import ProviderError, TransientProviderError
from indexer.images import PreparedImage
from indexer.pipeline import RunReport
from indexer.providers.base import BatchJobs
from indexer.store.batches import CREATING, EMBEDDINGS, UNSENT, BatchEntry, BatchLog
from indexer.store.connection import now

log = logging.getLogger(__name__)

_REQUEST_OVERHEAD = 8 * 1024  # instructions, schema and vocabulary, per request
AGAIN = " again"  # a replacement job's display name: the replaced one's, and this


@dataclass
class BatchReport:
    submitted_jobs: list[str] = field(default_factory=list)  # job names created by this run
    submitted_images: int = 0
    embedding_jobs: int = 0  # created by this run for collected descriptions
    already_in_jobs: int = 0  # pending images that an open job already carries
    adopted_jobs: int = 0  # created by a run that died before recording the name
    unconfirmed_jobs: int = 0  # creates that went unanswered: looked for by name
    collected_jobs: int = 0
    answers: int = 0
    resubmitted_jobs: int = 0
    states: Counter[str] = field(default_factory=Counter)  # open jobs by state, last poll
    seconds: float = 0.0


class Sender:
    """Sends description and embedding jobs, each recorded in the log first."""

    def __init__(self, jobs: BatchJobs, log_: BatchLog, collector: Collector, prefix: str) -> None:
        self.jobs = jobs
        self.log = log_
        self.collector = collector
        self.enricher = collector.enricher
        self.prefix = prefix  # of this run's description jobs' display names
        self._sequence = 0

    def describe(
        self,
        job: list[tuple[PreparedImage, Any]],
        size: int,
        batch: BatchReport,
        replaces: str | None = None,
    ) -> None:
        if replaces is None:
            self._sequence += 1
            display = f"{self.prefix} {self._sequence}"
        else:
            display = replaces + AGAIN
        entry = BatchEntry(
            display, "", CREATING, {i.id: str(i.path) for i, _ in job}, size, now(), bool(replaces)
        )
        name = self.create(entry, lambda: self.jobs.submit([r for _, r in job], display), batch)
        if name is not None:
            batch.submitted_jobs.append(name)
            batch.submitted_images += len(job)

    def embed(
        self,
        tagged: Sequence[Tagged],
        pictures: Sequence[PreparedImage],
        display: str,
        batch: BatchReport,
        resubmitted: bool = False,
    ) -> None:
        """Send tagged answers (and `pictures`, in the same order, or none) as an embedding
        job, its entry holding them."""
        if not tagged:
            self.log.forget(display)
            return
        size = sum(len(t.document) for t in tagged) + sum(request_bytes(p) for p in pictures)
        entry = BatchEntry(
            display,
            "",
            CREATING,
            {t.id: t.path for t in tagged},
            size,
            now(),
            resubmitted,
            EMBEDDINGS,
            {t.id: t.as_json() for t in tagged},
            bool(pictures),
        )
        documents = [t.document for t in tagged]
        send = lambda: self.jobs.submit_embeddings(documents, pictures, display)  # noqa: E731
        if self.create(entry, send, batch) is not None:
            batch.embedding_jobs += 1

    def create(
        self, entry: BatchEntry, send: Callable[[], tuple[str, str]], batch: BatchReport
    ) -> str | None:
        """Record `entry`, create its job with `send` and record the job's name; None when
        the create went unanswered (the job is then looked for by its display name)."""
        self.log.intend(entry)  # before the job exists: a crash now is seen by `adopt`
        try:
            name, state = send()
        except TransientProviderError as exc:
            if exc.refused:  # retried already, and still not acted on: no job was made
                self.refused(entry)
                raise
            log.warning(
                "creating batch job %r went unanswered (%s); looking for it by name",
                entry.display_name,
                exc,
            )
            batch.unconfirmed_jobs += 1
            return None
        except ProviderError:
            self.refused(entry)
            raise
        # The whole entry again, not an update: a worker that took the intent for a dead
        # run's and forgot it must not lose the job.
        self.log.intend(replace(entry, job=name, state=state))
        return name

    def refused(self, entry: BatchEntry) -> None:
        """No job was made: a description job's images are simply pending again; an
        embedding job's answers are paid for, and kept to be sent again."""
        if entry.kind == EMBEDDINGS:
            self.log.update(entry.display_name, "", UNSENT)
        else:
            self.log.forget(entry.display_name)

    def resend(
        self,
        entry: BatchEntry,
        display: str,
        report: RunReport,
        batch: BatchReport,
        resubmitted: bool = False,
    ) -> None:
        """An embedding job again, from the answers its entry holds, under `display`."""
        tagged = held(entry)
        pictures: list[PreparedImage] = []
        if self.enricher.remote_pictures:
            tagged, pictures = self.collector.reread(tagged, report)
        self.embed(tagged, pictures, display, batch, resubmitted)


def request_bytes(image: PreparedImage) -> int:
    """Bytes an inline request for `image` adds to a job: base64 JPEG and the instructions."""
    return len(image.jpeg) * 4 // 3 + _REQUEST_OVERHEAD
