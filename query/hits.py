"""The hit a search returns, built from what the store found. No numpy, no store: importing
the query client stays light."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from indexer.records import Found, StoredRecord
from indexer.vocabulary import Keywords


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: str
    path: str
    score: float  # cosine similarity, higher is better
    keywords: Keywords
    caption: str
    copies: tuple[str, ...] = ()  # other paths holding the same bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "score": self.score,
            "keywords": self.keywords,
            "caption": self.caption,
            "copies": list(self.copies),
        }


def as_hit(record: StoredRecord, score: float) -> Hit:
    return Hit(
        record.id,
        record.path,
        round(score, 6),
        record.keywords,
        record.caption,
        tuple(record.copies),
    )


def to_hits(found: Sequence[Found]) -> list[Hit]:
    """A store's answer, in its order, as hits."""
    return [as_hit(f.record, f.score) for f in found]
