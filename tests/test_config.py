from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import load_settings
from indexer.errors import ConfigError


@pytest.fixture(autouse=True)
def clean(hermetic: Path) -> None:
    """Every test here starts from no setting and an empty working folder."""


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


def test_a_chroma_server_elsewhere_or_set_by_a_dotenv_is_announced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().store_notice() is None  # embedded: nothing leaves the machine
    monkeypatch.setenv("CHROMA_HOST", "127.0.0.1")
    assert load_settings().store_notice() is None  # the user's own choice, on this machine
    monkeypatch.setenv("CHROMA_HOST", "chroma.example.com")
    notice = load_settings().store_notice()
    assert notice and "chroma.example.com" in notice and "unencrypted" in notice
    assert "environment variable" in notice


def test_a_chroma_token_never_travels_unencrypted_to_another_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHROMA_TOKEN", "secret")
    monkeypatch.setenv("CHROMA_HOST", "127.0.0.1")
    assert load_settings().chroma_token == "secret"  # plain HTTP on this machine: allowed
    monkeypatch.setenv("CHROMA_HOST", "chroma.example.com")
    with pytest.raises(ConfigError, match="unencrypted"):
        load_settings()
    monkeypatch.setenv("CHROMA_SSL", "true")
    settings = load_settings()
    assert settings.chroma_location == "https://chroma.example.com:8000"
    notice = settings.store_notice()
    assert notice and "chroma.example.com" in notice and "unencrypted" not in notice
    monkeypatch.setenv("CHROMA_DATABASE", "shop")
    assert load_settings().chroma_location.endswith("(tenant default_tenant, database shop)")


def test_a_planted_dotenv_pointing_the_store_elsewhere_is_announced_before_connecting(
    hermetic: Path,
) -> None:
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    (hermetic / ".env").write_text(
        f"CHROMA_HOST=127.0.0.1\nCHROMA_PORT={port}\nINDEXER_STORE_RETRY_SECONDS=0\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "indexer", "status"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "INDEXER_HOME": str(hermetic / "home"), "COLUMNS": "1000"},
    )
    said = " ".join(done.stderr.split())
    assert done.returncode == 2
    assert "note: sending image paths, captions, keywords and vectors" in said
    assert f"CHROMA_HOST in {hermetic / '.env'}" in said
