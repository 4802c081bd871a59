from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import load_settings
from indexer.errors import ConfigError


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "CHROMA_COLLECTION",
        "CHROMA_PATH",
        "CHROMA_HOST",
        "INDEXER_HOME",
        "INDEXER_CONCURRENCY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = load_settings()
    assert s.generation_model == "gemini-3.8-flash"
    assert s.embedding_model == "gemini-embedding-2" and s.embedding_dim == 768
    assert (s.thinking_level, s.media_resolution) == ("low", "medium")
    assert s.keyword_threshold == 0.7
    assert s.collection == "clothing" and not s.uses_server
    assert s.store_path == s.home / "chroma"


def test_environment_dotenv_and_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    Path(".env").write_text("GEMINI_API_KEY=from-dotenv\nCHROMA_COLLECTION=shop\n")
    monkeypatch.setenv("INDEXER_HOME", str(tmp_path / "h"))
    s = load_settings(concurrency=3)
    assert s.google_api_key == "from-dotenv"  # GEMINI_API_KEY is accepted too
    assert s.collection == "shop"
    assert s.store_path == tmp_path / "h" / "chroma"
    assert s.concurrency == 3
    monkeypatch.setenv("GOOGLE_API_KEY", "from-env")
    assert load_settings().google_api_key == "from-env"  # the environment beats .env


def test_stray_variables_do_not_leak_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # Field names are not variable names: HOME and COLLECTION mean nothing here.
    monkeypatch.setenv("COLLECTION", "nope")
    monkeypatch.setenv("HOME", "/nonexistent-home")
    s = load_settings()
    assert s.collection == "clothing"


def test_invalid_values_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INDEXER_CONCURRENCY", "lots")
    with pytest.raises(ConfigError, match="INDEXER_CONCURRENCY"):
        load_settings()
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        load_settings(colour="red")


def test_thinking_and_resolution_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_THINKING_LEVEL", "MINIMAL")
    monkeypatch.setenv("GEMINI_MEDIA_RESOLUTION", "High")
    s = load_settings()
    assert (s.thinking_level, s.media_resolution) == ("minimal", "high")
    monkeypatch.setenv("GEMINI_THINKING_LEVEL", "extreme")
    with pytest.raises(ConfigError, match="GEMINI_THINKING_LEVEL"):
        load_settings()
