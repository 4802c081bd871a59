"""Keyword correction with the fake embedding model (synonyms close, unrelated words far)."""

from __future__ import annotations

from pathlib import Path

from indexer.keywords import EmbeddingCache, KeywordMapper
from indexer.vocabulary import Vocabulary
from tests.fake_gemini import fake_embedding


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, words: list[str]) -> list[list[float]]:
        self.calls.append(list(words))
        return [fake_embedding(w, 64) for w in words]


def test_off_vocabulary_words_map_to_the_nearest_keyword_or_are_dropped() -> None:
    mapper = KeywordMapper(Vocabulary.load(), CountingEmbedder(), threshold=0.7)
    [result] = mapper.map_many([{"color": ["purple"], "garment": ["tee"], "style": ["spaceship"]}])
    assert result.keywords["color"] == ["violet"]
    assert result.keywords["garment"] == ["T-shirt"]
    assert result.keywords["style"] == []
    assert result.corrections == {"purple": "violet", "tee": "T-shirt"}
    assert result.dropped == ["spaceship"]


def test_threshold_decides() -> None:
    strict = KeywordMapper(Vocabulary.load(), CountingEmbedder(), threshold=0.95)
    [result] = strict.map_many([{"color": ["purple"]}])
    assert result.keywords["color"] == [] and result.dropped == ["purple"]


def test_allowed_keywords_pass_untouched_and_misfiled_ones_move_facet() -> None:
    embedder = CountingEmbedder()
    mapper = KeywordMapper(Vocabulary.load(), embedder)
    [result] = mapper.map_many([{"garment": ["dress", "Summer"], "color": ["RED", "red"]}])
    assert result.keywords["garment"] == ["dress"]
    assert result.keywords["season"] == ["summer"]
    assert result.keywords["color"] == ["red"]
    assert embedder.calls == []  # nothing to correct, nothing embedded


def test_unknown_facet_competes_against_all_keywords() -> None:
    mapper = KeywordMapper(Vocabulary.load(), CountingEmbedder())
    [result] = mapper.map_many([{"colour": ["crimson"]}])
    assert result.keywords["color"] == ["red"]


def test_vocabulary_vectors_are_computed_once_and_cached_on_disk(tmp_path: Path) -> None:
    vocab = Vocabulary.load()
    first = CountingEmbedder()
    mapper = KeywordMapper(vocab, first, cache=EmbeddingCache(tmp_path, "fake-64"))
    mapper.map_many([{"color": ["purple"]}, {"color": ["navy"]}])
    mapper.map_many([{"color": ["purple"]}])
    vocab_calls = [c for c in first.calls if "violet" in c]
    assert len(vocab_calls) == 1 and len(vocab_calls[0]) == len(vocab.all_keywords())
    assert sorted(w for c in first.calls if "violet" not in c for w in c) == ["navy", "purple"]

    second = CountingEmbedder()
    again = KeywordMapper(vocab, second, cache=EmbeddingCache(tmp_path, "fake-64"))
    [result] = again.map_many([{"color": ["purple"]}])
    assert result.keywords["color"] == ["violet"]
    assert second.calls == [["purple"]]  # vocabulary from disk; only the new word embedded


def test_damaged_cache_is_recomputed(tmp_path: Path) -> None:
    (tmp_path / "keyword-embeddings-fake.json").write_text("{not json")
    embedder = CountingEmbedder()
    mapper = KeywordMapper(Vocabulary.load(), embedder, cache=EmbeddingCache(tmp_path, "fake"))
    [result] = mapper.map_many([{"color": ["purple"]}])
    assert result.keywords["color"] == ["violet"]


def test_a_phrase_no_keyword_is_near_falls_back_on_its_head_noun() -> None:
    mapper = KeywordMapper(Vocabulary.load(), CountingEmbedder(), threshold=0.95)
    [result] = mapper.map_many([{"garment": ["padded jacket", "spaceship hull"]}])
    assert result.keywords["garment"] == ["jacket"]  # the last word is the head noun
    assert result.corrections == {"padded jacket": "jacket"}
    assert result.dropped == ["spaceship hull"]  # a head that is no keyword is no fallback


def test_keywords_match_however_their_parts_are_joined() -> None:
    embedder = CountingEmbedder()
    mapper = KeywordMapper(Vocabulary.load(), embedder)
    [result] = mapper.map_many([{"garment": ["Long Sleeve  Top", "t shirt"]}])
    assert result.keywords["garment"] == ["long-sleeve top", "T-shirt"]
    assert embedder.calls == []  # the vocabulary's own keywords: nothing embedded
