"""What a catalog owns, and deleting it: only its own collections, and nothing left behind
for later records to inherit (chroma-core/chroma#7594)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from indexer.config import load_settings
from indexer.errors import ConfigError, StoreError
from indexer.records import EmbeddingSpec, ImageRecord
from indexer.store import ImageStore, layout, partitions
from indexer.store.connection import connect
from tests.conftest import image_record

pytestmark = pytest.mark.usefixtures("hermetic")

SPEC = EmbeddingSpec("fake", "model-a", 3)


def record(rid: str, vec: list[float], **keywords: list[str]) -> ImageRecord:
    return image_record(rid, vec, vec, **keywords)


def test_chroma_still_leaks_list_metadata_across_delete_collection() -> None:
    """The upstream bug the store works around. When this fails, Chroma is fixed: require
    that release and let `layout.drop` delete collections directly."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    with tempfile.TemporaryDirectory() as folder:
        client = chromadb.PersistentClient(
            path=folder, settings=ChromaSettings(anonymized_telemetry=False)
        )
        old = client.create_collection("leak", embedding_function=None)
        old.add(ids=["a"], embeddings=[[1.0, 0.0]], metadatas=[{"kw_color": ["black"]}])
        client.delete_collection("leak")
        new = client.create_collection("leak", embedding_function=None)
        new.add(ids=["b"], embeddings=[[1.0, 0.0]], metadatas=[{"n": 1}])
        assert new.get(where={"kw_color": {"$contains": "black"}})["ids"] == ["b"]


def test_after_reset_a_filter_returns_only_records_that_match(tmp_path: Path) -> None:
    # No partitions: the new records are the first rows written, and take the freed ids.
    conf = load_settings(chroma_path=tmp_path / "db", collection="shop", partition_facets_text="")
    with ImageStore.open(conf, write=True, spec=SPEC, image_spec=SPEC) as store:
        store.upsert([record(f"old{i}", [1, i, 0], color=["black"]) for i in range(5)])
    ImageStore.reset(conf)
    with ImageStore.open(conf, write=True, spec=SPEC, image_spec=SPEC) as store:
        store.upsert([record(f"new{i}", [1, i, 0], garment=["dress"]) for i in range(5)])
        assert store.query([1, 0, 0], {"color": ["black"]}, 10) == []
        assert store.query([1, 0, 0], {"color": ["black"]}, 10, pictures=True) == []
        assert all(r.keywords == {"garment": ["dress"]} for r in store.records())
        for name in ("shop", "shop-images"):
            leaked = layout.find(store._client, name)
            assert leaked is not None
            assert leaked.get(where={"kw_color": {"$contains": "black"}})["ids"] == []
        assert store.verify().findings == []


@pytest.mark.parametrize(
    "name",
    [
        "shop-images",
        "shop-failures",
        "shop-roots",
        "shop-usage",
        "shop-batches",
        "shop--next",
        "shop--kw--x",
        "a--b",
    ],
)
def test_names_the_store_keeps_beside_a_catalog_are_refused_as_catalog_names(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ConfigError, match="catalog name"):
        load_settings(chroma_path=tmp_path / "db", collection=name)


def test_reset_leaves_a_collection_that_only_bears_one_of_its_names(tmp_path: Path) -> None:
    conf = load_settings(chroma_path=tmp_path / "db", collection="shop")
    with ImageStore.open(conf, write=True, spec=SPEC) as store:
        store.upsert([record("a", [1, 0, 0], color=["red"])])
    client, _ = connect(conf)
    # No failure was logged, so the store made no `shop-failures`: another tool did.
    client.create_collection("shop-failures", embedding_function=None).add(
        ids=["x"], embeddings=[[1.0]], metadatas=[{"keep": True}]
    )
    stranger = client.create_collection("shop--next", metadata={"catalog": "other"})
    stranger.add(ids=["y"], embeddings=[[1.0]])
    dropped = dict(ImageStore.reset(conf))
    assert dropped == {"shop": 1, "shop-changes": 1}  # the change mark is its own
    assert "shop-failures" not in dropped and "shop--next" not in dropped
    assert client.get_collection("shop-failures").count() == 1
    assert client.get_collection("shop--next").count() == 1


def test_drop_refuses_a_collection_not_marked_as_the_catalogs(tmp_path: Path) -> None:
    client, _ = connect(load_settings(chroma_path=tmp_path / "db"))
    mine = client.create_collection("mine", metadata=layout.mark("shop"))
    mine.add(ids=["a"], embeddings=[[1.0]])
    client.create_collection("theirs", metadata=layout.mark("other"))
    client.create_collection("nobodys")
    assert layout.drop(client, "mine", "shop") == 1
    assert layout.drop(client, "mine", "shop") is None
    for name in ("theirs", "nobodys"):
        with pytest.raises(StoreError, match="left as it is"):
            layout.drop(client, name, "shop")
        assert layout.find(client, name) is not None


@pytest.mark.parametrize("step", ["get", "delete", "delete_collection"])
def test_a_collection_another_process_drops_meanwhile_is_gone_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Two processes that open a catalog as a switch ends both drop the retired collection;
    whichever comes second finds it gone at some step of the drop."""
    from chromadb.api.models.Collection import Collection

    client, _ = connect(load_settings(chroma_path=tmp_path / "db"))
    retired = client.create_collection("shop--retired", metadata=layout.mark("shop"))
    retired.add(ids=["a", "b"], embeddings=[[1.0], [0.5]])
    other, _ = connect(load_settings(chroma_path=tmp_path / "db"))
    owner = Collection if step != "delete_collection" else type(client)
    real = getattr(owner, step)

    def racing(self: object, *args: object, **kwargs: object) -> object:
        # Chroma's own method: the other process's drop lands just before this step.
        monkeypatch.setattr(owner, step, real)
        if layout.find(other, "shop--retired") is not None:
            other.delete_collection("shop--retired")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, step, racing)
    assert layout.drop(client, "shop--retired", "shop") is None
    assert layout.find(client, "shop--retired") is None


def test_dropping_a_facets_partitions_keeps_those_of_a_facet_that_slugs_alike(
    tmp_path: Path,
) -> None:
    conf = load_settings(
        chroma_path=tmp_path / "db", collection="slugs", partition_facets_text="color,color_"
    )
    with ImageStore.open(conf, write=True, spec=SPEC) as store:
        store.upsert([record("a", [1, 0, 0], color=["red"], color_=["red"])])
        parts = store._parts
        assert parts is not None
        parts.drop(["color"])
        assert parts.collection("color", "red") is None
        kept = parts.collection("color_", "red")
        assert kept is not None and kept.get(include=[])["ids"] == ["a"]


def test_an_older_catalog_is_marked_and_its_partitions_rebuilt_under_new_names(
    tmp_path: Path,
) -> None:
    """A schema-5 catalog: no marks, partitions under names without the facet's hash."""
    conf = load_settings(chroma_path=tmp_path / "db", collection="legacy")
    with ImageStore.open(conf, write=True, spec=SPEC) as store:
        store.upsert([record(f"r{i}", [1, i, 0], garment=["dress"]) for i in range(3)])
        store.failures.record([])
        store.roots.remember(["/photos"])
    client, _ = connect(conf)
    old_part = "legacy--kw--garment--dress-abcdef"
    for c in client.list_collections():
        meta = {k: v for k, v in (c.metadata or {}).items() if k != layout.OWNER}
        if c.name.startswith("legacy--kw--"):
            client.delete_collection(c.name)
        elif c.name == "legacy":
            c.modify(metadata={**meta, "schema_version": 5, partitions.COMPLETE: "garment"})
        else:
            c.modify(metadata=meta or {"x": 1})
    client.create_collection(old_part, embedding_function=None).add(
        ids=["r0"], embeddings=[[1.0, 0.0, 0.0]], metadatas=[{"x": ["dress"]}]
    )
    with ImageStore.open(conf, write=True, spec=SPEC) as store:
        assert layout.partition_names(store._client, "legacy")
        assert old_part not in layout.partition_names(store._client, "legacy")
        for c in store._client.list_collections():
            assert layout.owner_of(c.metadata) == "legacy", c.name
        assert {f.record.id for f in store.query([1, 0, 0], {"garment": ["dress"]}, 10)} == {
            "r0",
            "r1",
            "r2",
        }
