"""ImageStore against a real embedded Chroma."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import load_settings
from indexer.errors import EmbeddingMismatchError, StoreError
from indexer.providers.base import EmbeddingSpec
from indexer.store import Failure, ImageRecord, ImageStore, where_clause

SPEC = EmbeddingSpec("fake", "model-a", 3)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    s = ImageStore.open(load_settings(chroma_path=tmp_path / "db", collection="test-items"))
    s.prepare_for_writing(SPEC)
    return s


def record(rid: str, vec: list[float], **keywords: list[str]) -> ImageRecord:
    return ImageRecord(
        id=rid,
        path=f"/photos/{rid}.jpg",
        caption=f"caption {rid}",
        keywords=keywords,
        raw_keywords=keywords,
        embedding=vec,
        model_ids={"embedding_model": "model-a"},
        vocabulary="v1",
    )


def test_where_clause() -> None:
    assert where_clause({}) is None
    assert where_clause({"season": ["summer"]}) == {"kw_season": {"$contains": "summer"}}
    assert where_clause({"season": ["summer"], "color": ["red"]}) == {
        "$and": [{"kw_season": {"$contains": "summer"}}, {"kw_color": {"$contains": "red"}}]
    }


def test_upsert_query_filter(store: ImageStore) -> None:
    store.upsert(
        [
            record("a", [1, 0, 0], season=["summer", "spring"], color=["red"]),
            record("b", [0.9, 0.1, 0], season=["winter"], color=[]),
            record("c", [0, 1, 0], season=["summer"]),
        ]
    )
    hits = store.query([1, 0, 0], {}, 2)
    assert [h.id for h in hits] == ["a", "b"]
    assert hits[0].score == pytest.approx(1.0)
    assert hits[0].keywords == {"season": ["summer", "spring"], "color": ["red"]}
    assert [h.id for h in store.query([1, 0, 0], {"season": ["summer"]}, 10)] == ["a", "c"]
    assert [h.id for h in store.query([1, 0, 0], {"season": ["summer"], "color": ["red"]}, 10)] == [
        "a"
    ]
    assert store.query([1, 0, 0], {"season": ["fall"]}, 10) == []


def test_known_paths_and_moves(store: ImageStore) -> None:
    store.upsert([record("a", [1, 0, 0])])
    assert store.known_paths(["a", "zzz"]) == {"a": "/photos/a.jpg"}
    store.update_paths({"a": "/elsewhere/a.jpg"})
    assert store.known_paths(["a"]) == {"a": "/elsewhere/a.jpg"}
    assert store.query([1, 0, 0], {}, 1)[0].caption == "caption a"  # rest untouched


def test_failures_round_trip_and_clear_by_id_or_path(store: ImageStore) -> None:
    store.record_failures([Failure("x", "/p/x.jpg", "broken"), Failure("y", "/p/y.jpg", "bad")])
    assert [(f.path, f.reason) for f in store.failures()] == [
        ("/p/x.jpg", "broken"),
        ("/p/y.jpg", "bad"),
    ]
    store.clear_failures(["x"], ["/p/y.jpg"])
    assert store.failures() == []


def test_another_embedding_model_is_refused(tmp_path: Path, store: ImageStore) -> None:
    store.close()  # its writer lock; this test opens the same store again
    other = ImageStore.open(load_settings(chroma_path=tmp_path / "db", collection="test-items"))
    with pytest.raises(EmbeddingMismatchError, match=r"built with fake:model-a \(3-d\)"):
        other.prepare_for_writing(EmbeddingSpec("fake", "model-b", 3))
    with pytest.raises(EmbeddingMismatchError):
        other.prepare_for_reading(EmbeddingSpec("fake", "model-a", 4))
    other.prepare_for_reading(SPEC)
    assert other.recorded_spec() == SPEC


def test_collection_from_a_newer_version_is_refused(tmp_path: Path, store: ImageStore) -> None:
    store._collection.modify(metadata={**(store._collection.metadata or {}), "schema_version": 99})
    again = ImageStore.open(load_settings(chroma_path=tmp_path / "db", collection="test-items"))
    with pytest.raises(StoreError, match="newer version"):
        again.prepare_for_reading(SPEC)


def test_missing_collection(tmp_path: Path) -> None:
    s = ImageStore.open(load_settings(chroma_path=tmp_path / "db", collection="nothing-here"))
    with pytest.raises(StoreError, match="no collection 'nothing-here'"):
        s.prepare_for_reading(None)


def test_image_vectors_are_fused_with_the_caption_route(tmp_path: Path) -> None:
    s = ImageStore.open(load_settings(chroma_path=tmp_path / "db", collection="fused-items"))
    image_spec = EmbeddingSpec("fake", "pixels", 2)
    s.prepare_for_writing(SPEC, image_spec)
    rec = record("a", [1, 0, 0], season=["summer"])
    s.upsert(
        [
            ImageRecord(**{**rec.__dict__, "image_embedding": [1.0, 0.0]}),
            ImageRecord(
                **{
                    **record("b", [0, 1, 0], season=["summer"]).__dict__,
                    "image_embedding": [0.0, 1.0],
                }
            ),
            record("c", [0.8, 0.6, 0]),  # no image vector: caption route only
        ]
    )
    reader = ImageStore.open(load_settings(chroma_path=tmp_path / "db", collection="fused-items"))
    reader.prepare_for_reading(SPEC)
    assert reader.image_spec == image_spec
    hits = reader.query_fused([0.0, 1.0], [1, 0, 0], {}, 3)
    scores = {h.id: h.score for h in hits}
    assert scores["a"] == pytest.approx(0.5)  # caption 1.0, picture 0.0
    assert scores["b"] == pytest.approx(0.5)  # caption 0.0, picture 1.0
    assert scores["c"] == pytest.approx(0.8)  # caption only
    filtered = reader.query_fused([0.0, 1.0], [1, 0, 0], {"season": ["summer"]}, 3)
    assert {h.id for h in filtered} == {"a", "b"}
