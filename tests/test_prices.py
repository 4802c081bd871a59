"""The price table: shipped or the user's, read strictly, and a model found by its name as
the API spells it."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.errors import ConfigError
from indexer.prices import Prices


def test_the_shipped_table_is_dated_names_its_source_and_prices_the_default_models() -> None:
    prices = Prices.load()
    assert prices.source.startswith("https://") and prices.as_of
    assert prices.batch_share == 0.5
    flash = prices.of("models/gemini-3.8-flash")
    assert flash is not None and flash.input > 0 and flash.output > flash.input
    # thinking is billed as output
    assert prices.generation("gemini-3.8-flash", 0, 1_000_000, 0) == prices.generation(
        "gemini-3.8-flash", 0, 0, 1_000_000
    )
    assert prices.of("gemini-embedding-2") is not None
    assert prices.of("some-other-model") is None


@pytest.mark.parametrize(
    "text",
    [
        "this is [not toml",
        '[models."gemini-3.8-flash"]\noutput = 1.0\n',  # no input price
        '[models."gemini-3.8-flash"]\ninput = "cheap"\n',
        "models = 3\n",
    ],
)
def test_a_broken_price_file_is_one_configuration_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="prices"):
        Prices.load(path)


def test_a_price_file_that_is_no_text_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="cannot read prices"):
        Prices.load(path)
    with pytest.raises(ConfigError, match="cannot read prices"):
        Prices.load(tmp_path / "missing.toml")
