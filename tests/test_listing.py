"""Browsing's listing: pages, totals and keyword counts under any filters equal what a pass
over every record gives (brute force), on catalogs with ties, empty facets and keywords no
record has."""

from __future__ import annotations

import random

import pytest

from indexer.records import Listed
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
    records: list[Listed], where: dict[str, list[str]], limit: int, offset: int
) -> tuple[int, list[str], dict[str, dict[str, int]]]:
    ordered = sorted(records, key=lambda r: (r.indexed_at, r.id), reverse=True)
    matching = [
        r for r in ordered if all(w in r.keywords.get(f, []) for f, ws in where.items() for w in ws)
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
    listing = Listing(records)
    filters: list[dict[str, list[str]]] = [
        {},
        {"season": ["summer"]},
        {"season": ["summer"], "color": ["red"]},
        {"color": ["red", "blue"]},
        {"color": ["purple"]},  # no record has it
        {"material": ["silk"]},  # nor any keyword of this facet
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
    page = Listing([]).page({"season": ["summer"]}, 24, 0)
    assert (page.total, page.ids, page.counts) == (0, [], {})
    assert Listing([]).page({}, 24, 0).total == 0
