"""`indexer run --batch`: describe images through the Gemini Batch API at half the price.

The walk, triage, keyword mapping, embeddings and writes are the online path's own; only the
description step changes: images that need one are sent as batch jobs of inline requests,
each job kept under the 20 MB inline limit (a large run makes several jobs). Inline requests
rather than a JSONL file through the Files API: no upload and download round trips to
retry, answers arrive keyed by content id inside the job itself, and a job of ~150 photos
is a natural unit to retry when it expires.

Never paying twice rests on the batch log (store/batches.py): every job is recorded under a
display name of its own before it is created, and named right after. A create is tried once;
when it times out or fails with a 5xx the job may exist all the same (the API takes no
idempotency key), so its record stays and the job is looked for by that display name on every
poll and every later run, and forgotten only when it has not appeared for UNCONFIRMED_AFTER.
A job the API no longer knows (404), or that expired or failed, is replaced once, under a
display name derived from the one it replaces, so a replacement a crash interrupted is found
rather than made again. Images carried by an open job are not described again, online or
in a batch; answers are written only for images not yet indexed, and a job whose answers
could not be embedded stays in the log to be collected again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.errors import ConfigError, ImageError, ProviderError, TransientProviderError, one_line
from indexer.images import PreparedImage, SourceImage, prepare, reread
from indexer.pipeline import BatchResult, Indexer, RunReport, Shard, batched
from indexer.providers.base import BatchJobs
from indexer.records import Description, Failure, ImageRecord
from indexer.store.batches import CREATING, BatchEntry
from indexer.store.connection import now

log = logging.getLogger(__name__)

# Inline requests of one job must stay under 20 MB; keep a margin for the envelope.
MAX_JOB_BYTES = 19 * 1024 * 1024
_REQUEST_OVERHEAD = 8 * 1024  # instructions, schema and vocabulary, per request
DONE_STATES = {"succeeded", "failed", "cancelled", "expired", "missing"}
# How long a job whose create went unanswered may take to appear in the account's list
# before its images are taken for never submitted.
UNCONFIRMED_AFTER = 1800.0
AGAIN = " again"  # a replacement job's display name: the replaced one's, and this


@dataclass
class BatchReport:
    submitted_jobs: list[str] = field(default_factory=list)  # job names created by this run
    submitted_images: int = 0
    already_in_jobs: int = 0  # pending images that an open job already carries
    adopted_jobs: int = 0  # created by a run that died before recording the name
    unconfirmed_jobs: int = 0  # creates that went unanswered: looked for by name
    collected_jobs: int = 0
    answers: int = 0
    resubmitted_jobs: int = 0
    states: Counter[str] = field(default_factory=Counter)  # open jobs by state, last poll
    seconds: float = 0.0


Progress = Callable[[RunReport, BatchReport], None]


class BatchIndexer:
    def __init__(self, indexer: Indexer, poll_seconds: float = 10.0) -> None:
        self.indexer = indexer
        self.enricher = indexer.enricher
        provider = indexer.enricher.provider
        jobs = provider.batch_jobs
        if jobs is None:
            raise ConfigError(f"provider {provider.name!r} has no batch mode; use gemini")
        self.jobs: BatchJobs = jobs
        self.log = indexer.store.batches
        self.poll_seconds = poll_seconds
        self.run_id = uuid.uuid4().hex[:12]
        self._sequence = 0

    # --- submitting ---

    def submit(
        self,
        paths: Sequence[Path],
        report: RunReport,
        batch: BatchReport,
        shard: Shard | None = None,
        notify: Progress = lambda _r, _b: None,
    ) -> None:
        """Adopt jobs a crash left unnamed, then send every image that needs a description
        and is in no open job."""
        self.adopt(batch)
        carried = {image for entry in self.log.entries() for image in entry.images}
        job: list[tuple[PreparedImage, Any]] = []
        size = 0
        for sources in self.indexer.pending(paths, report, shard):
            for source in sources:
                if source.id in carried:
                    batch.already_in_jobs += 1
                    continue
                image = self._prepared(source, report)
                if image is None:
                    continue
                if not self._affordable(image, batch.submitted_images + len(job), report):
                    break
                cost = _cost(image)
                if job and size + cost > MAX_JOB_BYTES:
                    self._create(job, size, batch)
                    job, size = [], 0
                job.append((image, self.jobs.request(image, self.enricher.vocabulary)))
                size += cost
                carried.add(source.id)
            notify(report, batch)
            if report.stopped is not None:
                break
        if job:
            self._create(job, size, batch)
        notify(report, batch)

    def _affordable(self, image: PreparedImage, sent: int, report: RunReport) -> bool:
        """Whether the run's budget (`--max-cost`) covers sending `image` in a job too."""
        budget, provider = self.enricher.budget, self.enricher.provider
        if budget is None or not provider.bills_tokens:
            return True
        budget.count_prompt(lambda: provider.prompt_tokens(image, self.enricher.vocabulary))
        fit, _ = budget.admit(1, provider.usage, batch=True)
        if not fit:
            report.stopped = budget.reached(provider.usage, sent, "submitted")
        return bool(fit)

    def _prepared(self, source: SourceImage, report: RunReport) -> PreparedImage | None:
        try:
            return prepare(source, self.indexer.settings.image_max_side)
        except ImageError as exc:
            self.indexer.fail([Failure(source.id, str(source.path), one_line(exc))], report)
            return None

    def _create(
        self,
        job: list[tuple[PreparedImage, Any]],
        size: int,
        batch: BatchReport,
        replaces: str | None = None,
    ) -> None:
        if replaces is None:
            self._sequence += 1
            display = f"clothing-indexer {self.indexer.store.name} {self.run_id} {self._sequence}"
        else:
            display = replaces + AGAIN
        entry = BatchEntry(
            display, "", CREATING, {i.id: str(i.path) for i, _ in job}, size, now(), bool(replaces)
        )
        self.log.intend(entry)  # before the job exists: a crash now is seen by `adopt`
        try:
            name, state = self.jobs.submit([r for _, r in job], display)
        except TransientProviderError as exc:
            if exc.refused:  # retried already, and still not acted on: no job was made
                self.log.forget(display)
                raise
            log.warning(
                "creating batch job %r went unanswered (%s); looking for it by name", display, exc
            )
            batch.unconfirmed_jobs += 1
            return
        except ProviderError:
            self.log.forget(display)  # refused: no job was made
            raise
        # The whole entry again, not an update: a worker that took the intent for a dead
        # run's and forgot it must not lose the job.
        self.log.intend(replace(entry, job=name, state=state))
        batch.submitted_jobs.append(name)
        batch.submitted_images += len(job)

    def adopt(self, batch: BatchReport) -> None:
        """Name the jobs whose create went unanswered or whose run died before naming them;
        forget the intents whose job has not appeared for UNCONFIRMED_AFTER (their images
        are pending again). A younger intent may be another worker's create under way."""
        unnamed = [e for e in self.log.entries() if not e.job]
        if not unnamed:
            return
        existing = {display: (name, state) for name, display, state in self.jobs.listing()}
        for entry in unnamed:
            if entry.display_name in existing:
                name, state = existing[entry.display_name]
                self.log.intend(replace(entry, job=name, state=state))
                batch.adopted_jobs += 1
            elif _age(entry.created_at) > UNCONFIRMED_AFTER:
                log.warning(
                    "batch job %r never appeared; its images are pending", entry.display_name
                )
                self.log.forget(entry.display_name)

    # --- waiting and collecting ---

    def wait(
        self,
        report: RunReport,
        batch: BatchReport,
        notify: Progress = lambda _r, _b: None,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        """Poll open jobs with backoff until every one is collected."""
        started = time.monotonic()
        interval = self.poll_seconds
        while True:
            if any(not e.job for e in self.log.entries()):
                self.adopt(batch)
            every = self.log.entries()
            if not every:
                break
            batch.states = Counter(CREATING for e in every if not e.job)
            progressed = False
            for entry in [e for e in every if e.job]:
                status = self.jobs.status(entry.job)
                if status.state == "succeeded":
                    progressed = self._collect(entry, status.answers or {}, report, batch)
                elif status.state in DONE_STATES:
                    self._redo(entry, status.state, report, batch, every)
                    progressed = True
                else:
                    batch.states[status.state] += 1
                    if status.state != entry.state:
                        self.log.update(entry.display_name, entry.job, status.state)
            batch.seconds = time.monotonic() - started
            notify(report, batch)
            if stop is not None and stop.is_set():
                break
            if not progressed and batch.states:
                sleep(interval)
                interval = min(interval * 1.5, max(self.poll_seconds, 60.0))
        batch.seconds = time.monotonic() - started

    def _collect(
        self,
        entry: BatchEntry,
        answers: dict[str, Description | ProviderError],
        report: RunReport,
        batch: BatchReport,
    ) -> bool:
        """Write a finished job's answers exactly as the online path writes its own, for the
        images not indexed meanwhile. When embedding fails, the entry stays (the answers
        are paid for and the job keeps them): False, and the next poll collects again."""
        items = list(entry.images.items())
        known = self.indexer.store.known_paths([i for i, _ in items])
        for chunk in batched(
            [(i, p) for i, p in items if i not in known], self.indexer.settings.batch_size
        ):
            images: list[PreparedImage] = []
            results = BatchResult([], [])
            for image_id, path in chunk:
                image = self._reread(image_id, path)
                if image is None:
                    reason = "the file changed or vanished before its batch answer was collected"
                    results.failures.append(Failure(image_id, path, reason))
                    continue
                images.append(image)
            missing = ProviderError("the batch job returned no answer for this image")
            try:
                outcomes = self.enricher.complete(
                    images, [answers.get(i.id, missing) for i in images], keep_answers=True
                )
            except ProviderError as exc:
                log.warning("batch job %s: embedding its answers failed (%s); kept", entry.job, exc)
                return False
            for outcome in outcomes:
                if isinstance(outcome, ImageRecord):
                    results.records.append(outcome)
                else:
                    results.failures.append(outcome)
            self.indexer.write(results, report)
        batch.answers += len(items)
        batch.collected_jobs += 1
        self.log.forget(entry.display_name)
        return True

    def _reread(self, image_id: str, path: str) -> PreparedImage | None:
        settings = self.indexer.settings
        return reread(Path(path), image_id, settings.image_max_side, settings.max_file_bytes)

    def _redo(
        self,
        entry: BatchEntry,
        state: str,
        report: RunReport,
        batch: BatchReport,
        log_entries: Sequence[BatchEntry],
    ) -> None:
        """An expired, failed or missing job: send its images once more, unless a
        replacement is already recorded; a second time, or when the job was cancelled (by
        someone who chose not to pay for it), record them as failed."""
        if any(e.display_name == entry.display_name + AGAIN for e in log_entries):
            self.log.forget(entry.display_name)  # replaced by a run that died right after
            return
        final = entry.resubmitted or state == "cancelled"
        then = "its images failed" if final else "submitting its images again"
        log.warning("batch job %s %s; %s", entry.job, state, then)
        if final:
            reason = f"batch job {state}" + (" twice" if entry.resubmitted else "")
            failures = [Failure(i, p, reason) for i, p in entry.images.items()]
            self.indexer.fail(failures, report)
        else:
            job: list[tuple[PreparedImage, Any]] = []
            size = 0
            for image_id, path in entry.images.items():
                image = self._reread(image_id, path)
                if image is None:
                    reason = "the file changed or vanished while its batch job ran"
                    self.indexer.fail([Failure(image_id, path, reason)], report)
                    continue
                job.append((image, self.jobs.request(image, self.enricher.vocabulary)))
                size += _cost(image)
            if job:
                self._create(job, size, batch, replaces=entry.display_name)
                batch.resubmitted_jobs += 1
        self.log.forget(entry.display_name)


def _age(created_at: str) -> float:
    """Seconds since an ISO time; very old when unreadable (a damaged entry is not kept)."""
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(created_at)).total_seconds()
    except ValueError:
        return float("inf")


def _cost(image: PreparedImage) -> int:
    """Bytes an inline request for `image` adds to a job: base64 JPEG and the instructions."""
    return len(image.jpeg) * 4 // 3 + _REQUEST_OVERHEAD
