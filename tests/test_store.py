"""ImageStore against a real embedded Chroma."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.config import Settings, load_settings
from indexer.errors import EmbeddingMismatchError, StoreError
from indexer.records import EmbeddingSpec, Failure, Found, ImageRecord
from indexer.store import ImageStore, partitions, where_clause
from indexer.vocabulary import Filters
from query import ranking
from tests.conftest import image_record

SPEC = EmbeddingSpec("fake", "model-a", 3)


def settings(tmp_path: Path, collection: str = "test-items") -> Settings:
    return load_settings(chroma_path=tmp_path / "db", collection=collection)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore.open(settings(tmp_path), write=True, spec=SPEC) as s:
        yield s


def record(rid: str, vec: list[float], **keywords: list[str]) -> ImageRecord:
    return image_record(rid, vec, None, **keywords)


def test_where_clause() -> None:
    assert where_clause({}) is None
    assert where_clause({"season": ["summer"]}) == {"kw_season": {"$contains": "summer"}}
    assert where_clause({"season": ["summer"], "color": ["red"]}) == {
        "$and": [{"kw_season": {"$contains": "summer"}}, {"kw_color": {"$contains": "red"}}]
    }
    assert where_clause(Filters({"season": ["summer"]}, {"color": ["black"]})) == {
        "$and": [
            {"kw_season": {"$contains": "summer"}},
            {"kw_color": {"$not_contains": "black"}},
        ]
    }


def test_upsert_query_filter(store: ImageStore) -> None:
    store.upsert(
        [
            record("a", [1, 0, 0], season=["summer", "spring"], color=["red"]),
            record("b", [0.9, 0.1, 0], season=["winter"], color=[]),
            record("c", [0, 1, 0], season=["summer"]),
        ]
    )
    found = store.query([1, 0, 0], {}, 2)
    assert [f.record.id for f in found] == ["a", "b"]
    assert found[0].score == pytest.approx(1.0)
    assert found[0].record.keywords == {"season": ["summer", "spring"], "color": ["red"]}
    summer = store.query([1, 0, 0], {"season": ["summer"]}, 10)
    assert [f.record.id for f in summer] == ["a", "c"]
    red = store.query([1, 0, 0], {"season": ["summer"], "color": ["red"]}, 10)
    assert [f.record.id for f in red] == ["a"]
    assert store.query([1, 0, 0], {"season": ["fall"]}, 10) == []
    # Chroma leaves out a record whose list holds the excluded keyword, and keeps one
    # without the facet at all ("b" has no colour).
    not_red = store.query([1, 0, 0], Filters({}, {"color": ["red"]}), 10)
    assert [f.record.id for f in not_red] == ["b", "c"]
    assert [
        f.record.id for f in store.query([1, 0, 0], Filters({}, {"season": ["spring"]}), 10)
    ] == ["b", "c"]


def test_a_search_that_reads_its_records_answers_as_one_that_reads_them_after(
    store: ImageStore,
) -> None:
    """`whole` reads each record with the search (one round trip on a server); `answer`
    gives the same hits as reading them by id afterwards, and reads those not carried."""
    store.upsert(
        [
            record("a", [1, 0, 0], season=["summer", "spring"], color=["red"]),
            record("b", [0.9, 0.1, 0], season=["winter"], color=[]),
            record("c", [0, 1, 0], season=["summer"]),
        ]
    )
    for where in ({}, {"season": ["summer"]}):
        bare = store.nearest([1, 0, 0], 3, where)
        whole = store.nearest([1, 0, 0], 3, where, whole=True)
        assert all(n.record is None for n in bare) and all(n.record for n in whole)
        records = {r.id: r for r in store.by_ids([n.id for n in bare])}
        by_id = [Found(records[n.id], n.score) for n in bare]
        assert by_id and store.answer(whole) == by_id == store.answer(bare)
        assert store.answer([bare[0], *whole[1:]]) == by_id


def test_known_paths_and_moves(store: ImageStore) -> None:
    store.upsert([record("a", [1, 0, 0])])
    assert store.known_paths(["a", "zzz"]) == {"a": "/photos/a.jpg"}
    store.update_stats({"a": ("/elsewhere/a.jpg", 10, 20)})
    assert store.known_paths(["a"]) == {"a": "/elsewhere/a.jpg"}
    assert store.query([1, 0, 0], {}, 1)[0].record.caption == "caption a"  # rest untouched


def test_failures_round_trip_and_clear_by_id_or_path(store: ImageStore) -> None:
    store.failures.record(
        [
            Failure("x", "/p/x.jpg", "gone"),
            Failure("x", "/p/x.jpg", "broken"),  # the same file twice in one write: the last
            Failure("y", "/p/y.jpg", "bad"),
        ]
    )
    assert [(f.path, f.reason) for f in store.failures.all()] == [
        ("/p/x.jpg", "broken"),
        ("/p/y.jpg", "bad"),
    ]
    store.failures.clear(["x"], ["/p/y.jpg"])
    assert store.failures.all() == []


def test_records_under_a_folder_are_found_by_the_folder_index(store: ImageStore) -> None:
    store.upsert([record("a", [1, 0, 0]), record("b", [0, 1, 0])])
    store.update_stats({"b": ("/elsewhere/deep/b.jpg", 10, 20)})
    assert store.paths_under("/photos") == ["/photos/a.jpg"]
    assert store.paths_under("/elsewhere/") == ["/elsewhere/deep/b.jpg"]
    assert store.paths_under("/photo") == []  # a folder, not a string prefix
    assert sorted(store.paths_under("/")) == ["/elsewhere/deep/b.jpg", "/photos/a.jpg"]


def test_another_embedding_model_is_refused(tmp_path: Path, store: ImageStore) -> None:
    store.upsert([record("a", [1, 0, 0], color=["red"])])
    store.close()  # its writer lock; this test opens the same store again
    conf = settings(tmp_path)
    with pytest.raises(EmbeddingMismatchError, match=r"built with fake:model-a \(3-d\)") as refused:
        ImageStore.open(conf, write=True, spec=EmbeddingSpec("fake", "model-b", 3))
    assert "indexer reset" in str(refused.value)
    with pytest.raises(EmbeddingMismatchError):
        ImageStore.open(conf, spec=EmbeddingSpec("fake", "model-a", 4))
    assert ImageStore.open(conf, spec=SPEC).spec == SPEC
    # The refused writer let go of the lock: a right one can write.
    ImageStore.open(conf, write=True, spec=SPEC).close()


def test_collection_from_a_newer_version_is_refused(tmp_path: Path, store: ImageStore) -> None:
    store._collection.modify(metadata={**(store._collection.metadata or {}), "schema_version": 99})
    store.close()
    with pytest.raises(StoreError, match="newer version"):
        ImageStore.open(settings(tmp_path), spec=SPEC)
    with pytest.raises(StoreError, match="newer version"):
        ImageStore.open(settings(tmp_path), write=True, spec=SPEC)


def test_missing_collection(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no collection 'nothing-here'"):
        ImageStore.open(settings(tmp_path, "nothing-here"))


def test_image_vectors_are_fused_with_the_caption_route(tmp_path: Path) -> None:
    image_spec = EmbeddingSpec("fake", "pixels", 2)
    conf = settings(tmp_path, "fused-items")
    s = ImageStore.open(conf, write=True, spec=SPEC, image_spec=image_spec)
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
    s.close()
    reader = ImageStore.open(conf, spec=SPEC)
    assert reader.image_spec == image_spec
    hits = ranking.fused(reader.candidates([1, 0, 0], [0.0, 1.0], {}, 3), [1, 0, 0], [0.0, 1.0], 3)
    scores = {h.id: h.score for h in hits}
    assert scores["a"] == pytest.approx(0.5)  # caption 1.0, picture 0.0
    assert scores["b"] == pytest.approx(0.5)  # caption 0.0, picture 1.0
    assert scores["c"] == pytest.approx(0.8)  # caption only
    candidates = reader.candidates([1, 0, 0], [0.0, 1.0], {"season": ["summer"]}, 3)
    filtered = ranking.fused(candidates, [1, 0, 0], [0.0, 1.0], 3)
    assert {h.id for h in filtered} == {"a", "b"}


def test_an_empty_collection_takes_the_next_writers_space(
    tmp_path: Path, store: ImageStore
) -> None:
    """A first run that reached no model leaves an empty collection; it must not lock out
    the provider the user tries next."""
    store.close()
    conf = settings(tmp_path)
    other = EmbeddingSpec("local", "all-MiniLM-L6-v2", 4)
    with ImageStore.open(conf, write=True, spec=other, image_spec=other) as adopted:
        assert adopted.spec == other
        adopted.upsert([record("a", [1, 0, 0, 0], color=["red"])])
    with pytest.raises(EmbeddingMismatchError):  # now that it holds a record, it is refused
        ImageStore.open(conf, write=True, spec=SPEC)


def test_reset_drops_the_collection_and_its_siblings_only(
    tmp_path: Path, store: ImageStore
) -> None:
    store.upsert([record("a", [1, 0, 0], color=["red"])])
    store.failures.record([Failure("b", "/photos/b.jpg", "corrupt")])
    store.roots.remember(["/photos"])
    store.close()
    with ImageStore.open(settings(tmp_path, "test-items-2"), write=True, spec=SPEC) as neighbour:
        neighbour.upsert([record("z", [0, 0, 1])])  # a name that merely starts the same
    dropped = dict(ImageStore.reset(settings(tmp_path)))
    assert dropped["test-items"] == 1
    assert {"test-items-failures", "test-items-roots"} <= set(dropped)
    assert "test-items-2" not in dropped
    with pytest.raises(StoreError, match="no collection"):
        ImageStore.open(settings(tmp_path))
    assert ImageStore.open(settings(tmp_path, "test-items-2")).count() == 1
    assert ImageStore.reset(settings(tmp_path)) == []


def partition_ids(store: ImageStore, facet: str, keyword: str) -> set[str]:
    found = store._parts.collection(facet, keyword) if store._parts else None
    return set(found.get(include=[])["ids"]) if found is not None else set()


def test_writes_keep_the_keyword_partitions_in_step(tmp_path: Path) -> None:
    conf = load_settings(chroma_path=tmp_path / "db", collection="parts")
    assert conf.partition_facets == ("garment", "season")
    with ImageStore.open(conf, write=True, spec=SPEC) as store:
        store.upsert(
            [
                record("a", [1, 0, 0], garment=["dress"], season=["summer", "spring"]),
                record("b", [0, 1, 0], garment=["coat"], season=["winter"], color=["red"]),
                record("c", [0, 0, 1], color=["red"]),  # no partitioned keyword
            ]
        )
        assert partition_ids(store, "season", "summer") == {"a"}
        assert partition_ids(store, "season", "spring") == {"a"}
        assert partition_ids(store, "garment", "coat") == {"b"}
        # Re-tagged: out of the old keyword's partition, into the new one's.
        store.upsert([record("a", [1, 0, 0], garment=["skirt"], season=["summer"])])
        assert partition_ids(store, "garment", "dress") == set()
        assert partition_ids(store, "garment", "skirt") == {"a"}
        assert partition_ids(store, "season", "spring") == set()
        # Forgotten: out of every partition.
        assert store.remove_paths(["/photos/b.jpg"]) == 1
        assert partition_ids(store, "garment", "coat") == set()
        assert partition_ids(store, "season", "winter") == set()
        near = store.nearest([1, 0, 0], 5, {"garment": ["skirt"]}, partition=("season", "summer"))
        assert [n.id for n in near] == ["a"]
    reader = ImageStore.open(conf)
    assert reader.partitioned() == {"garment", "season"}
    assert [n.id for n in reader.nearest([0, 0, 1], 5, partition=("garment", "skirt"))] == ["a"]
    assert reader.nearest([0, 0, 1], 5, partition=("garment", "hat")) == []


def test_partitions_are_built_for_an_existing_collection_and_dropped_when_unconfigured(
    tmp_path: Path,
) -> None:
    plain = load_settings(chroma_path=tmp_path / "db", collection="later", partition_facets_text="")
    with ImageStore.open(plain, write=True, spec=SPEC) as store:
        store.upsert(
            [record(f"r{i}", [1, i, 0], garment=["hat" if i % 2 else "dress"]) for i in range(6)]
        )
    assert ImageStore.open(plain).partitioned() == set()
    garment = load_settings(
        chroma_path=tmp_path / "db", collection="later", partition_facets_text="garment"
    )
    with ImageStore.open(garment, write=True, spec=SPEC) as store:
        assert partition_ids(store, "garment", "hat") == {"r1", "r3", "r5"}
    assert ImageStore.open(plain).partitioned() == {"garment"}  # readers use what is complete
    ImageStore.open(plain, write=True, spec=SPEC).close()  # no longer configured: dropped
    assert ImageStore.open(plain).partitioned() == set()
    assert not any("--kw--" in c.name for c in ImageStore.open(plain)._client.list_collections())


def test_reset_drops_the_partitions_too(tmp_path: Path) -> None:
    conf = load_settings(chroma_path=tmp_path / "db", collection="gone")
    with ImageStore.open(conf, write=True, spec=SPEC) as store:
        store.upsert([record("a", [1, 0, 0], garment=["dress"], season=["summer"])])
    dropped = [name for name, _ in ImageStore.reset(conf)]
    assert sum("--kw--" in name for name in dropped) == 2
    assert ImageStore.open(conf, write=True, spec=SPEC).partitioned() == {"garment", "season"}


def test_keywords_of_any_spelling_get_valid_distinct_partition_names(tmp_path: Path) -> None:
    """Vocabularies are the user's: markup, accents, control characters, a 600-character
    keyword, and two keywords that differ only in punctuation each get a partition."""
    hostile = ["<b>tank top</b>", "tank-top", "tank top", "café", "\x1b[31mred", "x" * 600, "--"]
    conf = load_settings(chroma_path=tmp_path / "db", collection="odd")
    with ImageStore.open(conf, write=True, spec=SPEC) as store:
        store.upsert([record(f"r{i}", [1, i, 0], garment=[word]) for i, word in enumerate(hostile)])
        for i, word in enumerate(hostile):
            assert partition_ids(store, "garment", word) == {f"r{i}"}


def test_a_partition_document_holds_the_record_keywords() -> None:
    keywords = {"season": ["summer", "spring"], "garment": ["dress"], "color": []}
    assert partitions.keywords_of_document(partitions.document(keywords)) == {
        "garment": ["dress"],
        "season": ["summer", "spring"],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {}),
        ("", {}),
        ("not json", {}),
        ('["dress"]', {}),
        ('{"garment":"dress","season":["summer",3,null]}', {"season": ["summer"]}),
    ],
)
def test_a_partition_document_that_is_not_keywords_reads_as_none(
    text: str | None, expected: dict[str, list[str]]
) -> None:
    """A partition's document is read for every over-fetched neighbour; one that is not the
    keyword object it should be counts as a record without keywords, never a failed search."""
    assert partitions.keywords_of_document(text) == expected
