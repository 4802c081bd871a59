"""Ranking by more than one vector route: an image found by either route is scored by both.

Chroma ranks each route on its own; fusing them needs both similarities for every candidate,
so the store hands over the candidates of each route with both vectors and this module scores
them exactly. Pure numpy: no store, no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.records import StoredRecord
from query.hits import Hit, as_hit


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y)) or 1.0
    return float(x @ y) / denominator


def fused(
    candidates: Sequence[StoredRecord],
    text_vector: Sequence[float],
    image_vector: Sequence[float],
    limit: int,
    image_weight: float = 0.5,
) -> list[Hit]:
    """The `limit` best candidates by a weighted mean of image-vector and caption-vector
    cosine similarity; a candidate without an image vector is scored by its caption alone."""
    hits = []
    for record in candidates:
        assert record.embedding is not None, "candidates come with their caption vectors"
        score = cosine(record.embedding, text_vector)
        if record.image_embedding is not None:
            score = (
                image_weight * cosine(record.image_embedding, image_vector)
                + (1 - image_weight) * score
            )
        hits.append(as_hit(record, score))
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits[:limit]


def reranked(
    candidates: Sequence[StoredRecord],
    caption_vector: Sequence[float] | None,
    picture_vector: Sequence[float] | None,
    words: Sequence[float],
    limit: int,
    words_weight: float = 0.5,
) -> list[Hit]:
    """The `limit` best candidates by a weighted mean of how they match the example (its
    caption and picture vectors, as `fused` scores them, or the one it has) and how their
    caption vector matches `words`."""
    hits = []
    for record in candidates:
        assert record.embedding is not None, "candidates come with their caption vectors"
        alike = [
            cosine(own, vector)
            for own, vector in (
                (record.embedding, caption_vector),
                (record.image_embedding, picture_vector),
            )
            if own is not None and vector is not None
        ]
        example = sum(alike) / len(alike) if alike else 0.0
        score = (1 - words_weight) * example + words_weight * cosine(record.embedding, words)
        hits.append(as_hit(record, score))
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits[:limit]


RRF_K = 60  # the constant of Cormack et al.'s reciprocal rank fusion


def reciprocal_rank(
    candidates: Sequence[StoredRecord],
    text_vector: Sequence[float],
    image_vector: Sequence[float],
    limit: int,
) -> list[Hit]:
    """Rank by reciprocal rank fusion of the two routes: sum of 1 / (60 + rank) per route.

    Scale-free, which matters when one route compares text with text and the other text
    with pictures: their cosines live on different scales. The reported score stays the
    better of the two cosines, so it reads like every other score."""
    by_route: list[dict[str, int]] = []
    cosines: dict[str, float] = {}
    for route in ("caption", "image"):
        scored = []
        for record in candidates:
            vector = record.embedding if route == "caption" else record.image_embedding
            query = text_vector if route == "caption" else image_vector
            if vector is not None:
                score = cosine(vector, query)
                scored.append((score, record.id))
                cosines[record.id] = max(cosines.get(record.id, -1.0), score)
        scored.sort(reverse=True)
        by_route.append({rid: rank for rank, (_, rid) in enumerate(scored, 1)})
    fused = {
        record.id: sum(1.0 / (RRF_K + ranks[record.id]) for ranks in by_route if record.id in ranks)
        for record in candidates
    }
    ordered = sorted(candidates, key=lambda r: fused[r.id], reverse=True)
    return [as_hit(r, cosines.get(r.id, 0.0)) for r in ordered[:limit]]
