"""What the store sends Chroma stays within Chroma Cloud's documented limits, so a catalog can
move there: at most 300 records a write, 32 metadata keys a record of at most 36 bytes each,
8 predicates a filter. Chroma's own methods are watched; the store runs as it is."""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indexer.config import load_settings
from indexer.errors import ConfigError, QueryError
from indexer.records import EmbeddingSpec, ImageRecord
from indexer.store import ImageStore
from indexer.vocabulary import MAX_FACETS, Vocabulary
from query.filters import MAX_FILTER_TERMS, checked

pytestmark = pytest.mark.usefixtures("hermetic")

SPEC = EmbeddingSpec("fake", "model-a", 3)
WRITES = ("add", "upsert", "update", "delete")
# The longest facet names a vocabulary may have, as many as it may have.
FACETS = [f"{letter}{'x' * 25}" for letter in string.ascii_lowercase[:MAX_FACETS]]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every write and query the store asks of Chroma, with its arguments."""
    from chromadb.api.models.Collection import Collection

    calls: list[tuple[str, dict[str, Any]]] = []
    for name in (*WRITES, "query", "get"):
        real = getattr(Collection, name)

        def watched(
            self: Collection, *args: Any, _name: str = name, _real: Any = real, **kw: Any
        ) -> Any:
            calls.append((_name, kw))
            return _real(self, *args, **kw)

        monkeypatch.setattr(Collection, name, watched)
    yield calls


def record(i: int) -> ImageRecord:
    keywords = {facet: [f"w{i % 3}"] for facet in FACETS}
    return ImageRecord(
        id=f"{i:032x}",
        path=f"/photos/{i}.jpg",
        caption=f"caption {i}",
        keywords=keywords,
        raw_keywords=keywords,
        corrections={"blu": "blue"},
        embedding=[1.0, i / 1000, 0.5],
        image_embedding=[0.5, 1.0, i / 1000],
        model_ids={
            "provider": "gemini",
            "generation_model": "gemini-3.8-flash",
            "embedding_model": "model-a",
            "image_model": "model-b",
        },
        vocabulary="v1",
        size=1000 + i,
        mtime_ns=10**18 + i,
        likeness=",".join(["0123456789abcdef"] * 11),
        copies=(f"/copies/{i}.jpg",),
    )


def predicates(where: dict[str, Any] | None) -> int:
    if not where:
        return 0
    if "$and" in where or "$or" in where:
        return sum(predicates(w) for w in next(iter(where.values())))
    return len(where)


def test_writes_records_and_filters_stay_within_chroma_clouds_limits(
    tmp_path: Path, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    settings = load_settings(
        chroma_path=tmp_path / "db", partition_facets_text=",".join(FACETS[:2])
    )
    with ImageStore.open(settings, write=True, spec=SPEC, image_spec=SPEC) as store:
        store.upsert([record(i) for i in range(700)])
        store.remove_paths([f"/photos/{i}.jpg" for i in range(350)])
    vocabulary = Vocabulary.from_mapping({f: ["w0", "w1", "w2"] for f in FACETS})
    where = checked(vocabulary, {f: "w1" for f in FACETS[:MAX_FILTER_TERMS]})
    from query.planner import Planner

    reader = ImageStore.open(settings)
    for pictures in (False, True):
        Planner(reader).nearest([1.0, 0.4, 0.5], 10, where, pictures)
        reader.query([1.0, 0.4, 0.5], where, 10, pictures)

    writes = [(name, kw) for name, kw in sent if name in WRITES]
    assert writes and max(len(kw.get("ids") or []) for _, kw in writes) <= 300
    metadatas = [m for _, kw in writes for m in kw.get("metadatas") or [] if m]
    assert max(len(m) for m in metadatas) <= 32
    assert max(len(key.encode()) for m in metadatas for key in m) <= 36
    filters = [kw.get("where") for name, kw in sent if name in ("query", "get", "delete")]
    assert max(predicates(w) for w in filters) <= 8


def test_a_vocabulary_or_filter_beyond_those_limits_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="at most 16"):
        Vocabulary.from_mapping({f"f{i}": ["a"] for i in range(MAX_FACETS + 1)})
    with pytest.raises(ConfigError, match="at most 26"):
        Vocabulary.from_mapping({"x" * 27: ["a"]})
    vocabulary = Vocabulary.from_mapping({"color": [f"c{i}" for i in range(12)]})
    with pytest.raises(QueryError, match="at most 8"):
        checked(vocabulary, {"color": [f"c{i}" for i in range(9)]})
