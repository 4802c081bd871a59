"""Batch jobs in flight: the sibling collection `<name>-batches`, so that every worker and
every later run knows which images are already paid for.

An entry is written *before* its job is created (state "creating", no job name yet) and gets
the job's name right after. A crash in between leaves an entry that names the job's display
name, by which the next run finds the job in the account's list and adopts it, or learns
that it was never created. Either way no image is submitted twice.

A description job's entry names its images; an embedding job's entry also holds the answers
of the description job it follows (paid for, tagged, not yet written), so that they outlive
that job and every fault of the embedding one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from indexer.store.connection import Sibling, now, store_errors

CREATING = "creating"
UNSENT = "unsent"  # an embedding job whose create was refused: no job, answers kept
DESCRIPTIONS = "descriptions"
EMBEDDINGS = "embeddings"


@dataclass(frozen=True)
class BatchEntry:
    display_name: str
    job: str  # "" until the job is created
    state: str
    images: Mapping[str, str]  # content id -> path
    size: int  # bytes of the requests
    created_at: str
    resubmitted: bool = False  # this entry replaces an expired or failed job
    kind: str = DESCRIPTIONS
    answers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # embeddings' only
    pictures: bool = False  # an embedding job that embeds the pictures after the texts


class BatchLog(Sibling):
    suffix = "batches"

    @staticmethod
    def _id(display_name: str) -> str:
        return hashlib.sha256(display_name.encode()).hexdigest()[:32]

    @store_errors
    def intend(self, entry: BatchEntry) -> None:
        """Record a job about to be created (or, with its name, one that was)."""
        self._log.upsert(
            ids=[self._id(entry.display_name)],
            embeddings=[[1.0]],
            documents=[_document(entry)],
            metadatas=[
                {
                    "kind": entry.kind,
                    "pictures": entry.pictures,
                    "display_name": entry.display_name,
                    "job": entry.job,
                    "state": entry.state,
                    "size": entry.size,
                    "created_at": entry.created_at or now(),
                    "resubmitted": entry.resubmitted,
                }
            ],
        )

    @store_errors
    def update(self, display_name: str, job: str, state: str) -> None:
        self._log.update(ids=[self._id(display_name)], metadatas=[{"job": job, "state": state}])

    @store_errors
    def forget(self, display_name: str) -> None:
        self._log.delete(ids=[self._id(display_name)])

    @store_errors
    def entries(self) -> list[BatchEntry]:
        """Every job not yet collected, oldest first."""
        got = self._log.get(include=["metadatas", "documents"])
        out = []
        for m, doc in zip(got["metadatas"] or [], got["documents"] or [], strict=True):
            if not m:
                continue
            kind = str(m.get("kind", DESCRIPTIONS))
            held = json.loads(doc or "{}")
            images, answers = (
                (held["images"], held["answers"]) if kind == EMBEDDINGS else (held, {})
            )
            out.append(
                BatchEntry(
                    display_name=str(m.get("display_name", "")),
                    job=str(m.get("job", "")),
                    state=str(m.get("state", "")),
                    images=images,
                    size=int(m.get("size", 0)),
                    created_at=str(m.get("created_at", "")),
                    resubmitted=bool(m.get("resubmitted", False)),
                    kind=kind,
                    answers=answers,
                    pictures=bool(m.get("pictures", False)),
                )
            )
        return sorted(out, key=lambda e: (e.created_at, e.display_name))


def _document(entry: BatchEntry) -> str:
    """A description job's images, as entries have always been written; an embedding job's
    images and answers."""
    if entry.kind == EMBEDDINGS:
        return json.dumps({"images": dict(entry.images), "answers": dict(entry.answers)})
    return json.dumps(dict(entry.images))
