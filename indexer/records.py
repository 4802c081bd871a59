"""The value types that travel between modules: what a model says about an image, the record
written for it, a record read back, a failure, a search's finds, and the vector space that made
a vector. Plain frozen dataclasses with no behaviour beyond conversions, so every module may
import this one and it imports none of them (only the vocabulary's type alias)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from indexer.vocabulary import Keywords


@dataclass(frozen=True)
class EmbeddingSpec:
    """Identifies a vector space; a collection records the one that built it."""

    provider: str
    model: str
    dim: int

    def __str__(self) -> str:
        return f"{self.provider}:{self.model} ({self.dim}-d)"


@dataclass(frozen=True)
class Description:
    """What a model says about one image: its raw keywords per facet and a caption."""

    keywords: Keywords
    caption: str


@dataclass(frozen=True)
class ImageRecord:
    """Everything written for one image, complete: nothing is stored with a part missing."""

    id: str
    path: str
    caption: str
    keywords: Keywords
    raw_keywords: Keywords
    embedding: list[float]
    model_ids: Mapping[str, str]
    vocabulary: str
    corrections: Mapping[str, str] = field(default_factory=dict)
    image_embedding: list[float] | None = None  # the picture's own vector, where a model gives one
    size: int = 0  # the file's size and mtime when read: a re-run skips it unread if unchanged
    mtime_ns: int = 0
    likeness: str = ""  # the picture's fingerprint (likeness.py), for near-duplicates
    copies: tuple[str, ...] = ()  # other paths holding the same bytes


@dataclass(frozen=True)
class StoredRecord:
    """A record as read back: what `ImageRecord` wrote, vectors only when asked for."""

    id: str
    path: str
    caption: str
    keywords: Keywords
    metadata: Mapping[str, Any]
    embedding: list[float] | None = None
    image_embedding: list[float] | None = None

    @property
    def copies(self) -> list[str]:
        """Other paths holding the same bytes (exact duplicates), as indexed."""
        found = self.metadata.get("copies")
        return [str(p) for p in found] if isinstance(found, list) else []


@dataclass(frozen=True)
class Failure:
    """An image that could not be indexed, and why in one line."""

    id: str
    path: str
    reason: str
    at: str = ""


@dataclass(frozen=True)
class Neighbour:
    """A record near a query vector, before it becomes a hit: enough to filter on."""

    id: str
    score: float  # cosine similarity
    keywords: Keywords  # the filterable keywords
    record: StoredRecord | None = None  # read with it when the search was asked to


@dataclass(frozen=True)
class Found:
    """A record a search found, with its cosine similarity to the query: the store's answer,
    which the query side ranks and turns into hits."""

    record: StoredRecord
    score: float


@dataclass
class Usage:
    """What a provider was billed for: tokens (from each response's usageMetadata) and
    requests. Added to from many threads, hence the lock."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    generation_requests: int = 0
    embedding_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + int(value or 0))

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        known = {f.name for f in fields(cls)} - {"_lock"}
        usage = cls()
        for name, value in data.items():
            if name in known:
                setattr(usage, name, int(value))
        return usage

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens + self.thinking_tokens


@dataclass(frozen=True)
class Listed:
    """A record as the catalog listing knows it: enough to order, filter and count."""

    id: str
    indexed_at: str  # ISO 8601, UTC: sorts as it reads
    keywords: Keywords


@dataclass(frozen=True)
class Page:
    """One page of the collection, newest first, under some filters."""

    total: int  # records matching the filters
    records: list[StoredRecord]
    counts: dict[str, dict[str, int]]  # facet -> keyword -> matching records that have it
