from __future__ import annotations

from pathlib import Path

import pytest

from indexer.errors import ConfigError
from indexer.vocabulary import Vocabulary


def test_default_vocabulary_has_the_cookbook_facets_and_common_garments() -> None:
    vocab = Vocabulary.load()
    assert list(vocab.facets) == ["garment", "audience", "style", "season", "color", "material"]
    assert set(vocab.facets["color"]) == {
        "red",
        "violet",
        "blue",
        "green",
        "yellow",
        "orange",
        "black",
        "white",
    }
    for garment in (
        "flannel",
        "suit",
        "shoes",
        "hat",
        "skirt",
        "jacket",
        "coat",
        "sweater",
        "hoodie",
        "blazer",
        "long-sleeve top",
        "T-shirt",
    ):
        assert garment in vocab.facets["garment"]


def test_keywords_match_case_insensitively_and_find_their_facet() -> None:
    vocab = Vocabulary.load()
    assert vocab.canonical("garment", "t-SHIRT") == "T-shirt"
    assert vocab.canonical("garment", "summer") is None
    assert vocab.facet_of("Summer") == "season"
    assert vocab.facet_of("spaceship") is None


def test_schema_puts_each_facet_keywords_in_an_enum() -> None:
    vocab = Vocabulary.from_mapping({"fit": ["slim", "loose"], "color": ["red"]})
    schema = vocab.response_schema()
    facets = schema["properties"]["keywords"]["properties"]
    assert facets["fit"]["items"]["enum"] == ["slim", "loose"]
    assert schema["required"] == ["keywords", "caption"]


def test_user_vocabulary_file(tmp_path: Path) -> None:
    path = tmp_path / "vocab.toml"
    path.write_text('fit = ["slim", "loose"]\nneckline = ["v-neck", "crew"]\n')
    vocab = Vocabulary.load(path)
    assert vocab.facets == {"fit": ("slim", "loose"), "neckline": ("v-neck", "crew")}
    assert vocab.fingerprint != Vocabulary.load().fingerprint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fit = [", "not valid TOML"),
        ("fit = []", "has no keywords"),
        ('fit = "slim"', "must be a list"),
        ('Fit = ["slim"]', "lower-case"),
        ('fit = ["slim", "Slim"]', "twice"),
        ("", "no facets"),
    ],
)
def test_invalid_vocabularies_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "vocab.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Vocabulary.load(path)


def test_missing_vocabulary_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read vocabulary"):
        Vocabulary.load(tmp_path / "nope.toml")
