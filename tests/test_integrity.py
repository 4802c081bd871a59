"""`indexer check`: each invariant broken on purpose in a real Chroma store, found, and
repaired so that the store answers exactly as one built afresh from the same records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from indexer.config import Settings, load_settings
from indexer.records import EmbeddingSpec, ImageRecord
from indexer.store import ImageStore, layout, partitions
from query.planner import Planner
from tests.conftest import image_record

pytestmark = pytest.mark.usefixtures("hermetic")

SPEC = EmbeddingSpec("fake", "model-a", 3)
FILTERS = [
    {},
    {"garment": ["dress"]},
    {"season": ["summer"]},
    {"garment": ["coat"], "season": ["winter"]},
    {"color": ["red"]},
    {"garment": ["dress"], "color": ["blue"]},
]


def record(rid: str, vec: list[float], **keywords: list[str]) -> ImageRecord:
    return image_record(rid, vec, [vec[2], vec[1], vec[0]], **keywords)


def catalog() -> list[ImageRecord]:
    garments, seasons, colors = ["dress", "coat", "skirt"], ["summer", "winter"], ["red", "blue"]
    return [
        record(
            f"r{i:02d}",
            [1.0, i / 10, (i % 3) / 5],
            garment=[garments[i % 3]],
            season=[seasons[i % 2]],
            color=[colors[(i // 2) % 2]],
        )
        for i in range(24)
    ]


def settings(root: Path, name: str) -> Settings:
    return load_settings(chroma_path=root / "db", collection=name)


def built(root: Path, name: str, records: list[ImageRecord]) -> Settings:
    conf = settings(root, name)
    with ImageStore.open(conf, write=True, spec=SPEC, image_spec=SPEC) as store:
        store.upsert(records)
    return conf


def answers(conf: Settings) -> list[list[tuple[str, float]]]:
    """What every filter returns, by either route, through the planner and pre-filtered."""
    store = ImageStore.open(conf)
    planner = Planner(store)
    out = []
    for where in FILTERS:
        for pictures in (False, True):
            for vector in ([1.0, 0.5, 0.2], [0.2, 0.1, 1.0]):
                near = store.answer(planner.nearest(vector, 5, where, pictures), where)
                out.append([(f.record.id, round(f.score, 5)) for f in near])
                direct = store.query(vector, where, 5, pictures)
                out.append([(f.record.id, round(f.score, 5)) for f in direct])
    return out


def verify(conf: Settings, repair: bool = False) -> dict[str, Any]:
    with ImageStore.open(conf, exclusive=repair) as store:
        return store.verify(repair).as_dict()


def kinds(report: dict[str, Any]) -> set[str]:
    return {str(f["kind"]) for f in report["findings"]}


def test_a_store_built_by_the_indexer_is_sound(tmp_path: Path) -> None:
    report = verify(built(tmp_path, "fresh", catalog()))
    assert report["sound"] and report["records"] == 24 and report["findings"] == []


def test_every_broken_invariant_is_found_and_the_repaired_store_answers_as_a_fresh_one(
    tmp_path: Path,
) -> None:
    fresh = built(tmp_path, "fresh", catalog())
    conf = built(tmp_path, "broken", catalog())
    expected = answers(fresh)
    client = ImageStore.open(conf)._client
    records = client.get_collection("broken")
    images = client.get_collection("broken-images")
    summer = partitions.partition_name("broken", "season", "summer")
    dress = partitions.partition_name("broken", "garment", "dress")
    coat_images = partitions.partition_name("broken-images", "garment", "coat")
    # A record's filter key says red where its keywords say blue.
    blue = next(r for r in catalog() if r.keywords["color"] == ["blue"])
    records.update(ids=[blue.id], metadatas=[{"kw_color": ["red"]}])
    # An image vector whose record is gone, and one with another record's keywords.
    images.upsert(ids=["ghost"], embeddings=[[1.0, 0.0, 0.0]], metadatas=[{"ikw_color": ["red"]}])
    images.update(ids=["r01"], metadatas=[{"ikw_garment": ["dress"]}])
    # A winter record in the summer partition, a dress out of the dress partition, and a
    # coat's image vector partitioned with another vector.
    winter = next(r for r in catalog() if r.keywords["season"] == ["winter"])
    client.get_collection(summer).upsert(
        ids=[winter.id],
        embeddings=[[1.0, 0.5, 0.2]],
        documents=[partitions.document({"season": ["summer"]})],
        metadatas=[{"x": 1}],
    )
    client.get_collection(dress).delete(ids=["r00"])
    client.get_collection(coat_images).update(ids=["r01"], embeddings=[[0.0, 1.0, 0.0]])
    # A partition of a facet that is not partitioned.
    stray = partitions.partition_name("broken", "color", "red")
    client.create_collection(stray, metadata=layout.mark("broken")).add(
        ids=["r00"], embeddings=[[1.0, 0.0, 0.0]]
    )
    assert answers(conf) != expected

    report = verify(conf)
    assert not report["sound"]
    assert kinds(report) == {
        "filter-keys",
        "orphan-image-vector",
        "image-vector-keys",
        "partition-extra",
        "partition-missing",
        "unused-partition",
    }
    repaired = verify(conf, repair=True)
    assert repaired["sound"] and kinds(repaired) == kinds(report)
    assert verify(conf) == {**verify(fresh), "collection": "broken"}
    assert answers(conf) == expected
    assert layout.find(client, stray) is None


def test_collections_bearing_the_catalogs_names_but_not_its_mark_are_reported_never_deleted(
    tmp_path: Path,
) -> None:
    conf = built(tmp_path, "shop", catalog())
    client = ImageStore.open(conf)._client
    client.create_collection("shop-usage").add(ids=["x"], embeddings=[[1.0]])
    report = verify(conf, repair=True)
    assert not report["sound"] and kinds(report) == {"foreign-collection"}
    assert client.get_collection("shop-usage").count() == 1


def test_the_check_command_prints_json_and_exits_1_on_a_store_that_is_not_sound(
    tmp_path: Path,
) -> None:
    conf = built(tmp_path, "clothing", catalog())
    run_env = {**os.environ, "CHROMA_PATH": str(conf.store_path)}
    ok = subprocess.run(
        [sys.executable, "-m", "indexer", "check", "--json"],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["sound"] is True
    client = ImageStore.open(conf)._client
    client.get_collection("clothing-images").delete(ids=["r03"])
    bad = subprocess.run(
        [sys.executable, "-m", "indexer", "check"],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "missing-image-vector" in bad.stdout and "not repairable" in bad.stdout


CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from chromadb.api.models.Collection import Collection
    from indexer.config import load_settings
    from indexer.records import EmbeddingSpec
    from indexer.store import ImageStore
    from tests.test_integrity import SPEC, catalog

    where = sys.argv[1]
    real_delete = Collection.delete

    def delete(self, *args, **kwargs):
        # Chroma's own method, not the indexer's: the process dies as the first partition
        # entry is taken out, after the re-tagged records were written.
        if "--kw--" in self.name and os.environ.get("ARMED"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_delete(self, *args, **kwargs)

    Collection.delete = delete
    conf = load_settings(chroma_path=where, collection="crash")
    with ImageStore.open(conf, write=True, spec=SPEC, image_spec=SPEC) as store:
        store.upsert(catalog())
        retagged = [r for r in catalog() if r.keywords["season"] == ["winter"]][:4]
        for r in retagged:
            r.keywords["season"] = ["summer"]
        os.environ["ARMED"] = "1"
        store.upsert(retagged)
    """
)


def test_a_write_killed_between_records_and_partitions_is_finished_by_the_next_writer(
    tmp_path: Path,
) -> None:
    where = tmp_path / "db"
    child = subprocess.run(
        [sys.executable, "-c", CRASH, str(where)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    conf = load_settings(chroma_path=where, collection="crash")
    report = verify(conf)
    assert not report["sound"] and "half-partitioned" in kinds(report)
    # Meanwhile no search returns a record its filter does not match.
    store = ImageStore.open(conf)
    planner = Planner(store)
    for pictures in (False, True):
        near = planner.nearest([1.0, 0.5, 0.2], 24, {"season": ["winter"]}, pictures)
        found = store.answer(near, {"season": ["winter"]})
        assert found and all(f.record.keywords["season"] == ["winter"] for f in found)
    ImageStore.open(conf, write=True, spec=SPEC, image_spec=SPEC).close()
    assert verify(conf)["sound"]
