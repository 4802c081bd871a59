"""How query vectors become ranked hits: one route (captions or pictures), both routes fused,
or one route's candidates re-ranked by words; filtered by keywords and, for "more like this",
without the record asked about.

Scores are cosine similarities (higher is closer): a single route's own, and for fused and
re-ranked searches a weighted mean of the two cosines each candidate is scored by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from indexer.vocabulary import Filters
from query.hits import Hit, to_hits

if TYPE_CHECKING:
    from indexer.records import StoredRecord
    from indexer.store import ImageStore
    from query.searchers import Searchers

# Candidates per route for fused and re-ranked ranking: enough that the best of either route
# is seen.
FUSION_DEPTH = 4
# How much of a re-ranked score is the words': at 0.35 the offline provider's "image --text
# red" kept 0.805 of the same garment (0.832 without words) and made 0.268 of the top five red
# (0.014 without); 0.5 made 0.491 red but kept 0.655 (`scripts/bench_similar.py`).
WORDS_WEIGHT = 0.35


@dataclass(frozen=True)
class Probe:
    """What a search asks with: `vector` searches the pictures (`pictures`) or the captions,
    fused with `second` (a picture vector) when given, or re-ranked by `words` (a caption-space
    vector) when given; `skip` is a record to leave out ("more like this one")."""

    vector: list[float]
    pictures: bool = False
    second: list[float] | None = None
    words: list[float] | None = None
    skip: str | None = None


def depth(limit: int) -> int:
    return max(FUSION_DEPTH * limit, 40)


class Routes:
    def __init__(self, searchers: Searchers) -> None:
        self._searchers = searchers

    def ranked(self, store: ImageStore, probe: Probe, filters: Filters, want: int) -> list[Hit]:
        """The `want` best hits for `probe`: one route, both fused, or, with words, the
        example's routes re-ranked by them."""
        vector, skip = probe.vector, probe.skip
        if probe.words is not None:
            return self.reranked(store, probe, probe.words, filters, want)
        if probe.pictures or probe.second is None:
            return self.one(store, vector, filters, want, probe.pictures, skip)
        return self.fused(store, vector, probe.second, filters, want, skip)

    def one(
        self,
        store: ImageStore,
        vector: Sequence[float],
        filters: Filters,
        want: int,
        pictures: bool,
        skip: str | None = None,
    ) -> list[Hit]:
        """The `want` nearest by one route (pictures, or captions), `skip` left out."""
        with self._searchers.engine(store, vector, pictures) as engine:
            near = engine.planner.nearest(vector, want + (skip is not None), filters, pictures)
            found = engine.store.answer([n for n in near if n.id != skip], filters)
        return to_hits(found)[:want]

    def fused(
        self,
        store: ImageStore,
        text_vector: Sequence[float],
        image_vector: Sequence[float],
        filters: Filters,
        want: int,
        skip: str | None = None,
    ) -> list[Hit]:
        """Both routes' nearest, each scored by both similarities (ranking.fused)."""
        from query import ranking  # numpy: loaded on the first such search, not on import

        found = self._candidates(store, [(text_vector, False), (image_vector, True)], filters, want)
        kept = [r for r in found if r.id != skip]
        return ranking.fused(kept, text_vector, image_vector, want)

    def reranked(
        self,
        store: ImageStore,
        probe: Probe,
        words: Sequence[float],
        filters: Filters,
        want: int,
    ) -> list[Hit]:
        """The example's nearest by its routes, re-ranked by how well each record's
        "keywords. caption" vector matches `words` (ranking.reranked): the example's garment
        stays, the words move the results."""
        from query import ranking

        caption: list[float] | None = None if probe.pictures else probe.vector
        picture = probe.vector if probe.pictures else probe.second
        routes = [(v, on) for v, on in ((caption, False), (picture, True)) if v is not None]
        found = self._candidates(store, routes, filters, want)
        kept = [r for r in found if r.id != probe.skip]
        return ranking.reranked(kept, caption, picture, words, want, WORDS_WEIGHT)

    def _candidates(
        self,
        store: ImageStore,
        routes: Sequence[tuple[Sequence[float], bool]],
        filters: Filters,
        want: int,
    ) -> list[StoredRecord]:
        first, pictures = routes[0]
        with self._searchers.engine(store, first, pictures) as engine:
            ids = dict.fromkeys(
                n.id
                for vector, on_pictures in routes
                for n in engine.planner.nearest(vector, depth(want + 1), filters, on_pictures)
            )
            return engine.store.with_vectors(list(ids), filters)
