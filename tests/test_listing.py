"""Browsing's listing: pages, totals and keyword counts under any filters equal what a pass
over every record gives (brute force), on catalogs with ties, empty facets and keywords no
record has."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from indexer.records import Listed
from indexer.vocabulary import Filters
from query.listing import Listing

FACETS = {"season": ["summer", "winter", "fall"], "color": ["red", "blue", "green", "black"]}


def catalog(seed: int, size: int) -> list[Listed]:
    chance = random.Random(seed)
    records = []
    for i in range(size):
        keywords = {
            facet: chance.sample(words, chance.randrange(3))
            for facet, words in FACETS.items()
            if chance.random() < 0.9
        }
        at = f"2026-12-0{chance.randrange(1, 4)}T00:00:0{chance.randrange(3)}+00:00"  # ties
        records.append(Listed(f"{i:032x}", at, keywords))
    return records


def brute(
    records: list[Listed], where: Filters | dict[str, list[str]], limit: int, offset: int
) -> tuple[int, list[str], dict[str, dict[str, int]]]:
    given = where if isinstance(where, Filters) else Filters(where)
    ordered = sorted(records, key=lambda r: (r.indexed_at, r.id), reverse=True)
    matching = [
        r
        for r in ordered
        if all(w in r.keywords.get(f, []) for f, ws in given.where.items() for w in ws)
        and not any(w in r.keywords.get(f, []) for f, ws in given.exclude.items() for w in ws)
    ]
    counts: dict[str, dict[str, int]] = {}
    for r in matching:
        for facet, words in r.keywords.items():
            for word in words:
                counts.setdefault(facet, {}).setdefault(word, 0)
                counts[facet][word] += 1
    return len(matching), [r.id for r in matching[offset : offset + limit]], counts


@pytest.mark.parametrize("seed", range(5))
def test_every_page_total_and_count_matches_a_pass_over_every_record(seed: int) -> None:
    records = catalog(seed, 1 + seed * 97)
    listing = Listing.of(records)
    filters: list[Filters | dict[str, list[str]]] = [
        {},
        {"season": ["summer"]},
        {"season": ["summer"], "color": ["red"]},
        {"color": ["red", "blue"]},
        {"color": ["purple"]},  # no record has it
        {"material": ["silk"]},  # nor any keyword of this facet
        Filters({}, {"color": ["black"]}),  # exclusions alone
        Filters({"season": ["summer"]}, {"color": ["black", "red"]}),
        Filters({"season": ["fall"]}, {"season": ["winter"], "material": ["silk"]}),
        Filters({}, {"color": ["purple"]}),  # excluding what no record has leaves all
    ]
    for where in filters:
        for limit, offset in ((24, 0), (24, 24), (5, 3), (10, 10_000)):
            page = listing.page(where, limit, offset)
            assert (page.total, page.ids, page.counts) == brute(records, where, limit, offset), (
                where,
                limit,
                offset,
            )


def test_an_empty_catalog_has_empty_pages() -> None:
    page = Listing.of([]).page({"season": ["summer"]}, 24, 0)
    assert (page.total, page.ids, page.counts) == (0, [], {})
    assert Listing.of([]).page({}, 24, 0).total == 0


def test_a_kept_listing_answers_as_the_one_read_and_a_damaged_one_is_ignored(
    tmp_path: Path,
) -> None:
    import numpy as np

    records = catalog(3, 300)
    listing = Listing.of(records)
    listing.save(tmp_path / "kept.npz")
    kept = Listing.load(tmp_path / "kept.npz")
    assert kept is not None
    for where in ({}, {"season": ["summer"], "color": ["red"]}):
        ours, theirs = listing.page(where, 24, 24), kept.page(where, 24, 24)
        assert (ours.total, ours.ids, ours.counts) == (theirs.total, theirs.ids, theirs.counts)

    (tmp_path / "junk.npz").write_bytes(b"not a listing")
    with (tmp_path / "short.npz").open("wb") as out:  # bits for fewer records than ids
        np.savez(
            out,
            ids=np.array(["a", "b"]),
            facets=np.array(["season"]),
            words=np.array(["summer"]),
            bits=np.zeros((1, 7), np.uint8),
        )
    with (tmp_path / "pickled.npz").open("wb") as out:  # objects would need unpickling
        np.savez(
            out,
            ids=np.array([object()], dtype=object),
            facets=np.array([]),
            words=np.array([]),
            bits=np.zeros((0, 1), np.uint8),
        )
    for name in ("junk.npz", "short.npz", "pickled.npz", "missing.npz"):
        assert Listing.load(tmp_path / name) is None, name
