"""The real CLIs, end to end: fake Gemini over HTTP, real Chroma on disk, real image files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.cli import app as indexer_app
from query.cli import app as query_app
from tests.conftest import garment_image
from tests.fake_gemini import FakeGemini

runner = CliRunner()

CATALOG = {
    "red": {
        "keywords": {"garment": ["dress"], "season": ["summer"], "color": ["red"],
                     "audience": ["women"], "material": ["cotton"]},
        "caption": "A red cotton summer dress for women.",
    },
    "blue": {
        "keywords": {"garment": ["jeans"], "season": ["fall"], "color": ["blue"],
                     "material": ["denim"]},
        "caption": "Blue denim jeans.",
    },
    "yellow": {
        "keywords": {"garment": ["dress"], "season": ["spring"], "color": ["yellow"]},
        "caption": "A yellow spring dress.",
    },
    "black": {
        "keywords": {"garment": ["coat"], "season": ["winter"], "color": ["black"],
                     "material": ["wool"]},
        "caption": "A black wool winter coat.",
    },
    "green": {
        "keywords": {"garment": ["shorts"], "season": ["summer"], "color": ["green"],
                     "style": ["sport"]},
        "caption": "Green sport shorts for summer.",
    },
}


def index(*args: str) -> object:
    return runner.invoke(indexer_app, ["run", *args])


def query(*args: str) -> object:
    return runner.invoke(query_app, list(args))


@pytest.fixture
def catalog(fake: FakeGemini, env: dict[str, str], tmp_path: Path) -> Path:
    fake.by_color.update(CATALOG)
    folder = tmp_path / "photos"
    for color in CATALOG:
        garment_image(folder / "nested" / f"{color}.jpg", color)
    return folder


def test_index_then_query_text(catalog: Path, fake: FakeGemini) -> None:
    result = index(str(catalog))
    assert result.exit_code == 0, result.output
    assert "indexed 5" in result.output
    assert fake.count("generateContent") == 5

    result = query("text", "red summer dress", "--json", "--limit", "3")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert len(hits) == 3
    assert set(hits[0]) == {"id", "path", "score", "keywords", "caption"}
    assert hits[0]["path"].endswith("red.jpg")
    assert hits[0]["keywords"]["season"] == ["summer"]
    assert hits[0]["caption"] == CATALOG["red"]["caption"]
    assert hits[0]["score"] > hits[1]["score"] >= hits[2]["score"]
