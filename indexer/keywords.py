"""Keyword correction: map a model's off-vocabulary words to the nearest allowed keyword.

As in the cookbook notebook, a word is replaced by the most similar keyword when the cosine
similarity of their embeddings reaches the threshold. A phrase that reaches it with no
keyword falls back on its last word, when that is a keyword of the facet: "padded jacket" is
a jacket, as English puts the head noun last; otherwise the word is dropped. Vocabulary
embeddings are computed once per vocabulary and model and kept on disk.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.files import atomic_write
from indexer.vectors import unit_rows
from indexer.vocabulary import Keywords, Vocabulary

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], list[list[float]]]


class EmbeddingCache:
    """Embeddings of words for one embedding model, persisted as JSON beside the store."""

    def __init__(self, directory: Path | None, model_key: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)
        self._path = directory / f"keyword-embeddings-{slug}.json" if directory else None
        self._lock = threading.Lock()
        self._vectors: dict[str, list[float]] = self._read()

    def _read(self) -> dict[str, list[float]]:
        if self._path is None or not self._path.exists():
            return {}
        try:
            data = json.loads(self._path.read_text())
        except (OSError, ValueError) as exc:
            # A damaged cache only costs a recomputation.
            log.warning("ignoring unreadable keyword cache %s: %s", self._path, exc)
            return {}
        return {k: v for k, v in data.items() if isinstance(v, list)}

    def get_many(self, words: Sequence[str], embed: EmbedFn) -> dict[str, list[float]]:
        with self._lock:
            missing = [w for w in dict.fromkeys(words) if w not in self._vectors]
        if missing:
            vectors = embed(missing)
            with self._lock:
                self._vectors.update(zip(missing, vectors, strict=True))
                self._write()
        with self._lock:
            return {w: self._vectors[w] for w in words}

    def _write(self) -> None:
        if self._path is None:
            return
        with atomic_write(self._path) as tmp:
            tmp.write_text(json.dumps(self._vectors))


@dataclass
class MappedKeywords:
    keywords: Keywords
    corrections: dict[str, str] = field(default_factory=dict)  # off-vocabulary word -> keyword
    dropped: list[str] = field(default_factory=list)


class KeywordMapper:
    def __init__(
        self,
        vocabulary: Vocabulary,
        embed: EmbedFn,
        threshold: float = 0.7,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.threshold = threshold
        self._embed = embed
        self._vocab_cache = cache or EmbeddingCache(None, "memory")
        self._word_cache = EmbeddingCache(None, "memory")  # off-vocabulary words, this process
        self._matrix: dict[str, tuple[list[str], np.ndarray]] | None = None
        self._lock = threading.Lock()

    def _facet_matrices(self) -> dict[str, tuple[list[str], np.ndarray]]:
        with self._lock:
            if self._matrix is None:
                vectors = self._vocab_cache.get_many(self.vocabulary.all_keywords(), self._embed)
                self._matrix = {
                    facet: (list(words), unit_rows([vectors[w] for w in words]))
                    for facet, words in self.vocabulary.facets.items()
                }
            return self._matrix

    def map_many(self, raws: Sequence[Keywords]) -> list[MappedKeywords]:
        """Map several raw keyword sets, embedding all their unknown words in one batch."""
        unknown: list[str] = []
        for raw in raws:
            for facet, words in raw.items():
                for w in words:
                    if self._exact(facet, w) is None and w.strip():
                        unknown.append(w.strip())
        vectors = self._word_cache.get_many(unknown, self._embed) if unknown else {}
        return [self._map_one(raw, vectors) for raw in raws]

    def _exact(self, facet: str, word: str) -> tuple[str, str] | None:
        allowed = self.vocabulary.canonical(facet, word)
        if allowed is not None:
            return facet, allowed
        # The model may file an allowed keyword under another facet.
        other = self.vocabulary.facet_of(word)
        if other is not None:
            return other, self.vocabulary.canonical(other, word) or word
        return None

    def _map_one(self, raw: Keywords, vectors: dict[str, list[float]]) -> MappedKeywords:
        result = MappedKeywords(self.vocabulary.empty())
        for facet, words in raw.items():
            for word in words:
                word = word.strip()
                if not word:
                    continue
                hit = (
                    self._exact(facet, word)
                    or self._nearest(facet, vectors[word])
                    or self._head(facet, word)
                )
                if hit is None:
                    result.dropped.append(word)
                    continue
                target_facet, keyword = hit
                if keyword.casefold() != word.casefold():
                    result.corrections[word] = keyword
                if keyword not in result.keywords[target_facet]:
                    result.keywords[target_facet].append(keyword)
        return result

    def _head(self, facet: str, phrase: str) -> tuple[str, str] | None:
        """The phrase's last word, if it is a keyword of `facet` ("padded jacket": jacket)."""
        words = phrase.split()
        if len(words) < 2:
            return None
        allowed = self.vocabulary.canonical(facet, words[-1])
        return (facet, allowed) if allowed is not None else None

    def _nearest(self, facet: str, vector: list[float]) -> tuple[str, str] | None:
        matrices = self._facet_matrices()
        # Known facet: only its keywords compete; unknown facet: all of them do.
        candidates = [facet] if facet in matrices else list(matrices)
        query = unit_rows([vector])[0]
        best: tuple[float, str, str] | None = None
        for name in candidates:
            words, matrix = matrices[name]
            scores = matrix @ query
            i = int(np.argmax(scores))
            if best is None or scores[i] > best[0]:
                best = (float(scores[i]), name, words[i])
        if best is None or best[0] < self.threshold:
            return None
        return best[1], best[2]
