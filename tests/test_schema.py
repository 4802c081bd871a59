"""Schema migrations: a collection written in the layout of schema 1 (the code as it was
before the folder index) is upgraded in place when opened, finishes an upgrade a crash
interrupted, and answers queries through the real CLI afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import chromadb
import pytest
from chromadb.api.client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings

from indexer.config import load_settings
from indexer.records import EmbeddingSpec
from indexer.store import ImageStore
from indexer.store.schema import SCHEMA_VERSION, SEARCH_EF
from tests.fake_gemini import FakeGemini, fake_embedding

# Three records as schema 1 wrote them (indexer/store.py before this change): no `folders`.
OLD_RECORDS = {
    "0" * 31 + "1": ("/shop/summer/red.jpg", "A red summer dress.", "dress", "summer", "red"),
    "0" * 31 + "2": ("/shop/fall/blue.jpg", "Blue denim jeans.", "jeans", "fall", "blue"),
    "0" * 31 + "3": ("/shop/summer/green.jpg", "Green summer shorts.", "shorts", "summer", "green"),
}


def _client(path: Path) -> chromadb.api.ClientAPI:
    return chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
    )


def write_schema_1(path: Path, already_migrated: int = 0) -> None:
    """The collection as schema 1 left it; the first `already_migrated` records carry the
    folder index, as after an upgrade killed part-way."""
    client = _client(path)
    meta = {
        "embedding_provider": "gemini",
        "embedding_model": "gemini-embedding-001",
        "embedding_dim": 768,
        "schema_version": 1,
        "created_at": "2026-10-01T00:00:00+00:00",
        "roots_json": json.dumps(["/shop"]),
    }
    records = client.create_collection(
        "clothing", configuration={"hnsw": {"space": "cosine"}}, metadata=meta
    )
    ids, vectors, captions, metas = [], [], [], []
    for n, (rid, (path_, caption, garment, season, color)) in enumerate(OLD_RECORDS.items()):
        keywords = {"garment": [garment], "season": [season], "color": [color]}
        words = f"{garment}, {season}, {color}. {caption}"
        ids.append(rid)
        vectors.append(fake_embedding(words, 768))
        captions.append(caption)
        metas.append(
            {
                "path": path_,
                "keywords_json": json.dumps(keywords),
                "raw_keywords_json": json.dumps(keywords),
                "corrections_json": "{}",
                "indexed_at": "2026-10-01T00:00:00+00:00",
                "provider": "gemini",
                "generation_model": "gemini-3.6-flash",
                "embedding_model": "gemini-embedding-001",
                "vocabulary": "abc123",
                "kw_garment": [garment],
                "kw_season": [season],
                "kw_color": [color],
                **(
                    {"folders": [str(p) for p in Path(path_).parents]}
                    if n < already_migrated
                    else {}
                ),
            }
        )
    records.upsert(ids=ids, embeddings=vectors, documents=captions, metadatas=metas)
    client.create_collection("clothing-failures").upsert(
        ids=["path-x"],
        embeddings=[[1.0]],
        documents=["broken"],
        metadatas=[{"path": "/shop/x.jpg"}],
    )
    SharedSystemClient.clear_system_cache()  # the CLI processes read the disk afresh


def recorded_state(path: Path) -> tuple[int, list[list[str]]]:
    SharedSystemClient.clear_system_cache()
    records = _client(path).get_collection("clothing")
    got = records.get(include=["metadatas"])
    folders = [list(m.get("folders", [])) for m in got["metadatas"] or []]
    return int((records.metadata or {})["schema_version"]), folders


@pytest.fixture
def old_store(env: dict[str, str], fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GEMINI_EMBEDDING_MODEL", "gemini-embedding-001")  # that era's model
    path = Path(env["INDEXER_HOME"]) / "chroma"
    write_schema_1(path)
    return path


def test_a_schema_1_collection_is_upgraded_and_queried(old_store: Path) -> None:
    assert SCHEMA_VERSION == 6
    found = subprocess.run(
        [sys.executable, "-m", "query", "text", "summer dress", "-w", "season=summer", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert next(h["path"] for h in json.loads(found.stdout)) == "/shop/summer/red.jpg"
    assert {h["path"] for h in json.loads(found.stdout)} == {
        "/shop/summer/red.jpg",
        "/shop/summer/green.jpg",
    }
    version, folders = recorded_state(old_store)
    assert version == SCHEMA_VERSION and all("/shop" in f for f in folders)
    store = ImageStore.open(load_settings())
    assert sorted(store.paths_under("/shop/summer")) == [
        "/shop/summer/green.jpg",
        "/shop/summer/red.jpg",
    ]
    assert store.roots.all() == ["/shop"] and [f.reason for f in store.failures.all()] == ["broken"]


def test_an_interrupted_upgrade_is_finished_on_the_next_open(
    env: dict[str, str], fake: FakeGemini
) -> None:
    path = Path(env["INDEXER_HOME"]) / "chroma"
    write_schema_1(path, already_migrated=1)
    assert recorded_state(path)[0] == 1
    store = ImageStore.open(load_settings())
    assert store.count() == 3
    version, folders = recorded_state(path)
    assert version == SCHEMA_VERSION and all(f and f[0].startswith("/shop/") for f in folders)
    status = subprocess.run(
        [sys.executable, "-m", "indexer", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0 and json.loads(status.stdout)["indexed"] == 3


def test_a_writer_gives_old_collections_and_partitions_the_current_search_width(
    old_store: Path,
) -> None:
    """ef_search lives in each collection's configuration; one made when it was smaller (the
    schema-1 store has Chroma's default, 100) would keep its lower recall for ever."""
    client = _client(old_store)
    assert client.get_collection("clothing").configuration["hnsw"]["ef_search"] < SEARCH_EF
    settings = load_settings()
    ImageStore.open(
        settings, write=True, spec=EmbeddingSpec("gemini", "gemini-embedding-001", 768)
    ).close()
    SharedSystemClient.clear_system_cache()
    client = _client(old_store)
    names = [c.name for c in client.list_collections()]
    parts = [n for n in names if "--kw--" in n]
    assert parts  # the writer built the default facets' partitions
    for name in ["clothing", *parts]:
        assert client.get_collection(name).configuration["hnsw"]["ef_search"] == SEARCH_EF
    # A partition left at the old width is widened too when a writer opens it.
    client.get_collection(parts[0]).modify(configuration={"hnsw": {"ef_search": 200}})
    SharedSystemClient.clear_system_cache()
    ImageStore.open(
        settings, write=True, spec=EmbeddingSpec("gemini", "gemini-embedding-001", 768)
    ).close()
    SharedSystemClient.clear_system_cache()
    assert (
        _client(old_store).get_collection(parts[0]).configuration["hnsw"]["ef_search"] == SEARCH_EF
    )


def test_a_large_catalog_gets_the_wider_search_on_its_next_writer_open(
    old_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past LARGE_CATALOG records (a million measured: recall 0.93 at 800, 0.99 at 3,000)
    the collection, its image vectors and partitions search wider; below it they do not."""
    from indexer.store import schema

    spec = EmbeddingSpec("gemini", "gemini-embedding-001", 768)
    settings = load_settings()
    ImageStore.open(settings, write=True, spec=spec).close()  # 3 records: a small catalog
    SharedSystemClient.clear_system_cache()
    assert _client(old_store).get_collection("clothing").configuration["hnsw"]["ef_search"] == (
        SEARCH_EF
    )
    monkeypatch.setattr(schema, "LARGE_CATALOG", 3)  # these three records count as large
    ImageStore.open(settings, write=True, spec=spec).close()
    SharedSystemClient.clear_system_cache()
    client = _client(old_store)
    names = [c.name for c in client.list_collections() if c.name.startswith("clothing")]
    searched = [n for n in names if n == "clothing" or "--kw--" in n]
    assert len(searched) > 1
    for name in searched:
        got = client.get_collection(name).configuration["hnsw"]["ef_search"]
        assert got == schema.LARGE_SEARCH_EF, name


def _as_schema_3(path: Path) -> None:
    """Take partition records back to schema 3's layout: keywords in their metadata only,
    no document; the main collection at version 3 with its partitions recorded complete."""
    client = _client(path)
    for collection in client.list_collections():
        if "--kw--" not in collection.name:
            continue
        part = client.get_collection(collection.name)
        got = part.get(include=["embeddings", "metadatas"])
        part.delete(ids=got["ids"])
        part.add(ids=got["ids"], embeddings=got["embeddings"], metadatas=got["metadatas"])
    records = client.get_collection("clothing")
    meta = dict(records.metadata or {})
    assert meta["partitions"]  # the writer had recorded its partitions complete
    records.modify(metadata={**meta, "schema_version": 3})
    SharedSystemClient.clear_system_cache()


def test_schema_3_partitions_are_not_searched_until_a_writer_rebuilds_them(
    old_store: Path,
) -> None:
    """Schema 4 reads a partition record's keywords from its document, which schema 3 did not
    write: in those partitions every over-fetch would find no match and fall back to Chroma's
    scan. The upgrade stops readers from using them; the next writer rebuilds them."""
    from query import QueryClient

    spec = EmbeddingSpec("gemini", "gemini-embedding-001", 768)
    ImageStore.open(load_settings(), write=True, spec=spec).close()
    SharedSystemClient.clear_system_cache()
    _as_schema_3(old_store)
    where = {"garment": ["dress"], "season": ["summer"]}

    def search() -> tuple[list[str], list[str]]:
        SharedSystemClient.clear_system_cache()
        with QueryClient.from_env() as client:
            paths = [r.path for r in client.text("summer dress", where)]
            return paths, client.planner.last_plan

    paths, plan = search()  # a reader upgrades the store no writer holds
    assert paths == ["/shop/summer/red.jpg"]
    assert not any(step.startswith("partition") for step in plan), plan
    assert recorded_state(old_store)[0] == SCHEMA_VERSION
    ImageStore.open(load_settings(), write=True, spec=spec).close()
    paths, plan = search()
    assert paths == ["/shop/summer/red.jpg"]
    assert plan and plan[0].startswith("partition"), plan


def test_image_vectors_get_keys_of_their_own_and_still_filter(tmp_path: Path) -> None:
    """Schema 5 names the image vectors' keyword keys `ikw_`: with the records' `kw_` keys
    shared, Chroma's filter on the records read the image vectors' entries too. A schema-4
    store is moved over on open, and a filtered image search finds the same records."""
    from indexer.records import ImageRecord

    settings = load_settings(
        chroma_path=tmp_path / "db", collection="pics", partition_facets_text=""
    )
    spec, image_spec = EmbeddingSpec("fake", "text", 3), EmbeddingSpec("fake", "pixels", 2)
    with ImageStore.open(settings, write=True, spec=spec, image_spec=image_spec) as store:
        store.upsert(
            [
                ImageRecord(
                    id=rid,
                    path=f"/photos/{rid}.jpg",
                    caption=rid,
                    keywords={"season": [season], "color": ["red"]},
                    raw_keywords={},
                    embedding=[1.0, 0.0, 0.0],
                    image_embedding=picture,
                    model_ids={},
                    vocabulary="v1",
                )
                for rid, season, picture in (
                    ("a", "summer", [1.0, 0.0]),
                    ("b", "winter", [0.9, 0.1]),
                    ("c", "summer", [0.0, 1.0]),
                )
            ]
        )
    SharedSystemClient.clear_system_cache()
    client = _client(tmp_path / "db")
    visual = client.get_collection("pics-images")
    got = visual.get(include=["metadatas"])
    assert all("ikw_season" in m and "kw_season" not in m for m in got["metadatas"])
    # Back to schema 4's layout: the image vectors under the records' keys.
    back = [
        {
            **{f"kw_{k[4:]}": v for k, v in m.items() if k.startswith("ikw_")},
            **{k: None for k in m if k.startswith("ikw_")},
        }
        for m in got["metadatas"]
    ]
    visual.update(ids=got["ids"], metadatas=back)
    assert all("kw_season" in m for m in visual.get(include=["metadatas"])["metadatas"])
    records = client.get_collection("pics")
    records.modify(metadata={**(records.metadata or {}), "schema_version": 4})
    SharedSystemClient.clear_system_cache()

    with ImageStore.open(settings, write=True, spec=spec, image_spec=image_spec) as store:
        near = store.nearest([1.0, 0.0], 3, {"season": ["summer"]}, pictures=True)
        assert [n.id for n in near] == ["a", "c"]
    SharedSystemClient.clear_system_cache()
    metas = _client(tmp_path / "db").get_collection("pics-images").get(include=["metadatas"])
    assert [sorted(k for k in m if "kw_" in k) for m in metas["metadatas"]] == [
        ["ikw_color", "ikw_season"]
    ] * 3
