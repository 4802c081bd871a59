"""The query planner against a real embedded Chroma: over-fetching for broad filters and
pre-filtering for narrow ones both give exactly what brute-force search gives."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.config import Settings, load_settings
from indexer.records import EmbeddingSpec, ImageRecord
from indexer.store import ImageStore
from indexer.vocabulary import FilterLike, Filters
from query.planner import Planner, matches

SPEC = EmbeddingSpec("fake", "planner", 16)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageStore, np.ndarray, list]:
    """3,000 records: half are summer, 1% are hats, vectors random."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keywords = [
        {
            "season": ["summer" if i % 2 else "winter"],
            "garment": ["hat" if i % 100 == 0 else "dress"],
        }
        for i in range(3000)
    ]
    # Without keyword partitions: these tests are about over-fetching and pre-filtering.
    settings = load_settings(
        chroma_path=tmp_path_factory.mktemp("db"), collection="planner", partition_facets_text=""
    )
    return filled(settings, vectors, keywords), vectors, keywords


def filled(settings: Settings, vectors: np.ndarray, keywords: list) -> ImageStore:
    """A store open for writing that holds record i with vectors[i] and keywords[i]."""
    store = ImageStore.open(settings, write=True, spec=SPEC)
    store.upsert(
        [
            ImageRecord(f"{i:06d}", f"/c/{i}.jpg", "x", kw, kw, v.tolist(), {}, "v")
            for i, (kw, v) in enumerate(zip(keywords, vectors, strict=True))
        ]
    )
    return store


def exact(
    vectors: np.ndarray, keywords: list, query: np.ndarray, where: FilterLike, k: int
) -> list:
    order = np.argsort(-(vectors @ query))
    return [f"{i:06d}" for i in order if matches(keywords[i], where)][:k]


@pytest.mark.parametrize(
    ("where", "share"),
    [
        ({"season": ["summer"]}, 0.5),
        ({"garment": ["hat"]}, 0.01),
        ({}, 1.0),
        (Filters({}, {"garment": ["hat"]}), 0.99),  # broad: over-fetched
        (Filters({}, {"garment": ["dress"]}), 0.01),  # narrow: pre-filtered
        (Filters({"season": ["summer"]}, {"garment": ["hat"]}), 0.495),
    ],
)
def test_plans_give_exact_results(catalog: tuple, where: FilterLike, share: float) -> None:
    store, vectors, keywords = catalog
    planner = Planner(store)
    assert planner.share(where) == pytest.approx(share, abs=0.02)
    rng = np.random.default_rng(1)
    for _ in range(20):
        query = rng.normal(size=16).astype(np.float32)
        query /= np.linalg.norm(query)
        got = [n.id for n in planner.nearest(query.tolist(), 10, where)]
        assert got == exact(vectors, keywords, query, where, 10)


@pytest.mark.parametrize("scan_ms_per_record", [0.0, 1.0])  # always pre-filter / over-fetch
def test_both_plans_give_exact_results(catalog: tuple, scan_ms_per_record: float) -> None:
    store, vectors, keywords = catalog
    planner = Planner(store, scan_ms_per_record)
    where = {"season": ["summer"]}
    planned = planner.over_fetch(10, planner.share(where))
    assert (planned is not None) == (scan_ms_per_record > 0)
    for query in vectors[:10]:
        got = [n.id for n in planner.nearest(query.tolist(), 10, where)]
        assert got == exact(vectors, keywords, query, where, 10)


def test_a_limit_beyond_the_matches_returns_every_match(catalog: tuple) -> None:
    store, vectors, _keywords = catalog
    planner = Planner(store)
    hats = planner.nearest(vectors[0].tolist(), 100, {"garment": ["hat"]})
    assert len(hats) == 30  # all of them
    summer = planner.nearest(vectors[0].tolist(), 2000, {"season": ["summer"]})
    assert len(summer) == 1500 and all(int(n.id) % 2 for n in summer)


def test_matches_rare_near_the_query_switch_to_pre_filtering_at_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Half the catalog is summer, but none of the 400 records nearest the query is: the
    first over-fetch finds no match, and the planner goes straight to pre-filtering (cheaper
    here than reading ever more neighbours) with the exact answer."""
    rng = np.random.default_rng(3)
    cluster = rng.normal(size=(400, 16)) * 0.05 + np.eye(16)[0]  # all winter, near e1
    rest = rng.normal(size=(2600, 16))
    vectors = np.concatenate([cluster, rest]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keywords = [{"season": ["winter" if i < 400 or i % 2 else "summer"]} for i in range(3000)]
    settings = load_settings(
        chroma_path=tmp_path_factory.mktemp("db"), collection="skewed", partition_facets_text=""
    )
    store = filled(settings, vectors, keywords)
    planner = Planner(store, scan_ms_per_record=0.005)  # a 15 ms scan: over-fetch 50 first
    where = {"season": ["summer"]}
    assert planner.share(where) == pytest.approx(0.43, abs=0.05)
    query = np.eye(16, dtype=np.float32)[0]
    got = [n.id for n in planner.nearest(query.tolist(), 10, where)]
    assert got == exact(vectors, keywords, query, where, 10)
    assert planner.last_plan == ["over-fetch 50", "pre-filter"]
    # Away from the cluster the matches are as common as in the catalog: one over-fetch.
    other = vectors[2999]
    got = [n.id for n in planner.nearest(other.tolist(), 10, where)]
    assert got == exact(vectors, keywords, other, where, 10)
    assert planner.last_plan == ["over-fetch 50"]


@pytest.fixture(scope="module")
def partitioned(
    catalog: tuple, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ImageStore, np.ndarray, list]:
    """The same catalog with garment and season partitioned, built when a writer opens it."""
    _plain, vectors, keywords = catalog
    settings = load_settings(
        chroma_path=tmp_path_factory.mktemp("db"), collection="parted", partition_facets_text=""
    )
    filled(settings, vectors, keywords).close()
    parted = load_settings(
        chroma_path=settings.chroma_path,
        collection="parted",
        partition_facets_text="garment,season",
    )
    ImageStore.open(parted, write=True, spec=SPEC).close()  # builds the partitions
    return ImageStore.open(parted), vectors, keywords


@pytest.mark.parametrize(
    ("where", "plan"),
    [
        ({"season": ["summer"]}, ["partition season=summer"]),
        ({"garment": ["hat"]}, ["partition garment=hat"]),
        # The rarer term's partition is searched; the other term is filtered within it.
        ({"garment": ["hat"], "season": ["summer"]}, ["partition garment=hat"]),
        ({"garment": ["dress"], "season": ["winter"]}, ["partition season=winter"]),
        # Exclusions are filtered within the partition of a required term, or over the
        # catalog when there is none.
        (Filters({"season": ["summer"]}, {"garment": ["hat"]}), ["partition season=summer"]),
        (Filters({"garment": ["dress"]}, {"season": ["winter"]}), ["partition garment=dress"]),
        (Filters({}, {"season": ["winter"]}), []),
    ],
)
def test_partitioned_facets_are_searched_in_their_partition_with_exact_results(
    partitioned: tuple, where: FilterLike, plan: list[str]
) -> None:
    store, vectors, keywords = partitioned
    assert store.partitioned() == {"garment", "season"}
    planner = Planner(store)
    rng = np.random.default_rng(5)
    for _ in range(10):
        query = rng.normal(size=16).astype(np.float32)
        query /= np.linalg.norm(query)
        got = [n.id for n in planner.nearest(query.tolist(), 10, where)]
        assert got == exact(vectors, keywords, query, where, 10)
        assert planner.last_plan[: len(plan)] == plan


def test_a_keyword_no_record_has_finds_nothing_in_a_partitioned_facet(partitioned: tuple) -> None:
    store, vectors, _ = partitioned
    assert Planner(store).nearest(vectors[0].tolist(), 10, {"garment": ["coat"]}) == []


def test_a_partition_is_planned_with_its_own_costs(catalog: tuple) -> None:
    """Reading a partition's neighbours (one keyword document each) is cheaper, and its
    pre-filter dearer per record, than on the main collection (one row per metadata key):
    the same over-fetch is affordable in a 10,000-record partition and not in a
    10,000-record catalog."""
    store, _vectors, _keywords = catalog
    planner = Planner(store)
    assert planner.over_fetch(10, 0.075, records=10_000) is None  # 200 neighbours
    assert planner.over_fetch(10, 0.075, records=10_000, partition=True) == 200
