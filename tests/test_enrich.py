"""The one enrich recipe: an image query is held to the rules ingestion applies, through
the CLI against the fake Gemini and embedded Chroma."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Ran, garment_image, in_process
from tests.fake_gemini import FakeGemini

# An answer no word of which fits the vocabulary, nor is near one.
NOTHING_FITS = {
    "keywords": {"garment": ["spaceship"], "style": ["quantum"]},
    "caption": "A spaceship in quantum style.",
}


def cli(tool: str, *args: str) -> Ran:
    return in_process(tool, *args)


@pytest.fixture
def photos(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("INDEXER_IMAGE_VECTORS", "false")
    fake.by_color.update(
        {
            "red": {
                "keywords": {"garment": ["dress"], "color": ["red"]},
                "caption": "A red dress.",
            },
            "cyan": NOTHING_FITS,
        }
    )
    folder = tmp_path / "photos"
    garment_image(folder / "red.jpg", "red")
    garment_image(folder / "odd.jpg", "cyan")
    return folder


def test_an_image_query_refuses_what_ingestion_refuses(photos: Path, fake: FakeGemini) -> None:
    run = cli("indexer", "run", str(photos))
    assert run.returncode == 1
    assert "odd.jpg: no keyword fits the vocabulary: spaceship, quantum" in run.stderr
    generated = fake.count("generateContent")

    query = cli("query", "image", str(photos / "odd.jpg"))
    assert query.returncode == 2
    assert "no keyword fits the vocabulary: spaceship, quantum" in query.stderr
    assert fake.count("generateContent") == generated + 1  # described once, then refused

    like_red = cli("query", "image", str(photos / "red.jpg"), "--json")
    assert like_red.returncode == 0, like_red.stderr
    assert [Path(h["path"]).name for h in json.loads(like_red.stdout)] == ["red.jpg"]
