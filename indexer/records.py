"""The value types that travel between modules: what a model says about an image, the record
written for it, a record read back, a failure, a search hit, and the vector space that made
a vector. Plain frozen dataclasses with no behaviour beyond conversions, so every module may
import this one and it imports none of them (only the vocabulary's type alias)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Failure:
    """An image that could not be indexed, and why in one line."""

    id: str
    path: str
    reason: str
    at: str = ""


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: str
    path: str
    score: float  # cosine similarity, higher is better
    keywords: Keywords
    caption: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "score": self.score,
            "keywords": self.keywords,
            "caption": self.caption,
        }
