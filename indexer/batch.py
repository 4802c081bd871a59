"""`indexer run --batch`: describe and embed images through the Gemini Batch API at half the
price.

The walk, triage, keyword mapping and writes are the online path's own; the model calls are
jobs instead. Images that need a description are sent as batch jobs of inline requests, each
job kept under the 20 MB inline limit (a large run makes several jobs). Once a description
job is collected, its answers are tagged and sent on as an embedding job (the texts, and the
pictures where the provider embeds them), and the records are written when that one is in.
Inline requests rather than a JSONL file through the Files API: no upload and download round
trips to retry, answers arrive inside the job itself, and a job of ~150 photos is a natural
unit to retry when it expires. Only new keywords are embedded online, to be mapped onto the
vocabulary before the text to embed is known (each word once, then cached).

Never paying twice rests on the batch log (store/batches.py): every job is recorded under a
display name of its own before it is created, and named right after. A create is tried once;
when it times out or fails with a 5xx the job may exist all the same (the API takes no
idempotency key), so its record stays and the job is looked for by that display name on every
poll and every later run, and forgotten only when it has not appeared for UNCONFIRMED_AFTER.
A job the API no longer knows (404), or that expired or failed, is replaced once, under a
display name derived from the one it replaces, so a replacement a crash interrupted is found
rather than made again. Images carried by an open job are not described again, online or
in a batch; answers are written only for images not yet indexed.

The answers a description job paid for are never dropped: its entry is forgotten only once
the embedding job's entry, holding them, is recorded (under a display name derived from
its own, so that collecting it twice makes one). An embedding job that cannot be made, never
appears, expires or fails is sent again from that entry, and one that fails twice, or is
cancelled, is embedded online: the descriptions are what cost, and they are kept.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.batch_collection import Collector
from indexer.batch_sender import AGAIN, BatchReport, Sender, request_bytes
from indexer.errors import (
    ConfigError,
    ImageError,
    ProviderError,
    ProviderUnavailableError,
    one_line,
)
from indexer.images import PreparedImage, SourceImage, prepare
from indexer.pipeline import Indexer, RunReport, Shard
from indexer.providers.base import BatchJobs, BatchStatus
from indexer.records import Failure
from indexer.store.batches import CREATING, EMBEDDINGS, UNSENT, BatchEntry

log = logging.getLogger(__name__)

# Inline requests of one job must stay under 20 MB; keep a margin for the envelope.
MAX_JOB_BYTES = 19 * 1024 * 1024
DONE_STATES = {"succeeded", "failed", "cancelled", "expired", "missing"}
# How long a job whose create went unanswered may take to appear in the account's list
# before its images are taken for never submitted.
UNCONFIRMED_AFTER = 1800.0
EMBEDDED = " embeddings"  # an embedding job's: its description job's, and this


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
        self.collector = Collector(indexer)
        self.poll_seconds = poll_seconds
        self.run_id = uuid.uuid4().hex[:12]
        prefix = f"clothing-indexer {indexer.store.name} {self.run_id}"
        self.sender = Sender(jobs, self.log, self.collector, prefix)

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
        self.adopt(report, batch)
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
                cost = request_bytes(image)
                if job and size + cost > MAX_JOB_BYTES:
                    self.sender.describe(job, size, batch)
                    job, size = [], 0
                job.append((image, self.jobs.request(image, self.enricher.vocabulary)))
                size += cost
                carried.add(source.id)
            notify(report, batch)
            if report.stopped is not None:
                break
        if job:
            self.sender.describe(job, size, batch)
        notify(report, batch)

    def _affordable(self, image: PreparedImage, sent: int, report: RunReport) -> bool:
        """Whether the run's budget (`--max-cost`) covers sending `image` in a job too."""
        budget, provider = self.enricher.budget, self.enricher.provider
        if budget is None or not provider.bills_tokens:
            return True
        budget.count_prompt(lambda: provider.prompt_tokens(image, self.enricher.vocabulary))
        fit, _ = budget.admit(1, provider.usage)
        if not fit:
            report.stopped = budget.reached(provider.usage, sent, "submitted")
        return bool(fit)

    def _prepared(self, source: SourceImage, report: RunReport) -> PreparedImage | None:
        try:
            return prepare(source, self.indexer.settings.image_max_side)
        except ImageError as exc:
            self.indexer.fail([Failure(source.id, str(source.path), one_line(exc))], report)
            return None

    def adopt(self, report: RunReport, batch: BatchReport) -> None:
        """Send again the embedding jobs whose create was refused; name the jobs whose create
        went unanswered or whose run died before naming them; past UNCONFIRMED_AFTER without
        appearing, a description job's images are pending again and an embedding job is sent
        again. A younger intent may be another worker's create under way."""
        every = self.log.entries()
        for entry in [e for e in every if not e.job and e.state == UNSENT]:
            self.sender.resend(entry, entry.display_name, report, batch)
        unnamed = [e for e in every if not e.job and e.state != UNSENT]
        if not unnamed:
            return
        existing = {display: (name, state) for name, display, state in self.jobs.listing()}
        for entry in unnamed:
            if entry.display_name in existing:
                name, state = existing[entry.display_name]
                self.log.intend(replace(entry, job=name, state=state))
                batch.adopted_jobs += 1
            elif _age(entry.created_at) > UNCONFIRMED_AFTER:
                log.warning("batch job %r never appeared", entry.display_name)
                if entry.kind == EMBEDDINGS:
                    self._redo(entry, "missing", report, batch, every)
                else:
                    self.log.forget(entry.display_name)  # its images are pending

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
                self.adopt(report, batch)
            every = self.log.entries()
            if not every:
                break
            batch.states = Counter(CREATING for e in every if not e.job)
            progressed = False
            for entry in [e for e in every if e.job]:
                status = self.jobs.status(entry.job)
                if status.state == "succeeded":
                    progressed |= self._collect(entry, status, report, batch, every)
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
        self.indexer.settle_copies()  # copies met while submitting, now that records exist
        batch.seconds = time.monotonic() - started

    def _collect(
        self,
        entry: BatchEntry,
        status: BatchStatus,
        report: RunReport,
        batch: BatchReport,
        log_entries: Sequence[BatchEntry],
    ) -> bool:
        """A finished job. A description job's answers are tagged and sent on as an embedding
        job (unless collecting it before got that far); an embedding job's vectors are written.
        False when the answers could not be tagged: the entry stays (the job keeps them) and
        the next poll collects again."""
        if entry.kind == EMBEDDINGS:
            expected = len(entry.answers) * (2 if entry.pictures else 1)
            if status.vectors is None or len(status.vectors) != expected:
                log.warning("batch job %s returned no usable vectors", entry.job)
                self._redo(entry, "failed", report, batch, log_entries)
                return True
            self.collector.write(entry, status.vectors, report)
            self.enricher.provider.usage.add(embedding_requests=1)
        else:
            follow = entry.display_name + EMBEDDED
            if not any(e.display_name.startswith(follow) for e in log_entries):
                try:
                    tagged, images = self.collector.tagged(entry, status.answers or {}, report)
                except ProviderUnavailableError:
                    raise
                except ProviderError as exc:
                    log.warning("batch job %s: mapping its keywords failed (%s)", entry.job, exc)
                    return False
                pictures = images if self.enricher.remote_pictures else []
                self.sender.embed(tagged, pictures, follow, batch)
            batch.answers += len(entry.images)
        batch.collected_jobs += 1
        self.log.forget(entry.display_name)
        return True

    def _redo(
        self,
        entry: BatchEntry,
        state: str,
        report: RunReport,
        batch: BatchReport,
        log_entries: Sequence[BatchEntry],
    ) -> None:
        """An expired, failed or missing job: send it once more, unless a replacement is
        already recorded. A second time, or when the job was cancelled (by someone who chose
        not to pay for it), a description job's images are recorded as failed, and an
        embedding job's answers are embedded online."""
        if any(e.display_name == entry.display_name + AGAIN for e in log_entries):
            self.log.forget(entry.display_name)  # replaced by a run that died right after
            return
        final = entry.resubmitted or state == "cancelled"
        if entry.kind == EMBEDDINGS:
            then = "embedding its answers online" if final else "submitting it again"
            log.warning("batch job %s %s; %s", entry.job or entry.display_name, state, then)
            if final:
                self.collector.write(entry, None, report)
            else:
                self.sender.resend(
                    entry, entry.display_name + AGAIN, report, batch, resubmitted=True
                )
                batch.resubmitted_jobs += 1
            self.log.forget(entry.display_name)
            return
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
                image = self.collector.image(image_id, path)
                if image is None:
                    reason = "the file changed or vanished while its batch job ran"
                    self.indexer.fail([Failure(image_id, path, reason)], report)
                    continue
                job.append((image, self.jobs.request(image, self.enricher.vocabulary)))
                size += request_bytes(image)
            if job:
                self.sender.describe(job, size, batch, replaces=entry.display_name)
                batch.resubmitted_jobs += 1
        self.log.forget(entry.display_name)


def _age(created_at: str) -> float:
    """Seconds since an ISO time; very old when unreadable (a damaged entry is not kept)."""
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(created_at)).total_seconds()
    except ValueError:
        return float("inf")
