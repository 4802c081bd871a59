"""The Gemini path sees images. The CLI against the fake Gemini (which merges multi-part
contents, refuses images for text-only models, accounts tokens) and embedded Chroma; image
vectors come from the API, not from the local image model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer.config import load_settings
from indexer.providers.gemini_responses import description_from_json
from indexer.store import ImageStore
from tests.conftest import Ran, garment_image, in_process
from tests.fake_gemini import FakeGemini

CATALOG = {
    "red": {"keywords": {"garment": ["dress"], "color": ["red"]}, "caption": "A red dress."},
    "blue": {"keywords": {"garment": ["jeans"], "color": ["blue"]}, "caption": "Blue jeans."},
    "green": {"keywords": {"garment": ["shorts"], "color": ["green"]}, "caption": "Green shorts."},
    # The caption never names the colour; only the picture shows it.
    "magenta": {"keywords": {"garment": ["hat"]}, "caption": "A festive hat."},
}


def cli(tool: str, *args: str, **env: str) -> Ran:
    """`indexer|query ARGS`, in this process (the test that kills a reembed starts one)."""
    return in_process(tool, *args, **env)


def names(result: Ran) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [Path(h["path"]).name for h in json.loads(result.stdout)]


@pytest.fixture
def photos(env: dict[str, str], fake: FakeGemini, tmp_path: Path) -> Path:
    fake.by_color.update(CATALOG)
    folder = tmp_path / "photos"
    for color in CATALOG:
        garment_image(folder / f"{color}.jpg", color)
    return folder


def test_records_get_picture_vectors_from_the_api_and_image_queries_describe_nothing(
    photos: Path, fake: FakeGemini, tmp_path: Path
) -> None:
    run = cli("indexer", "run", str(photos))
    assert run.returncode == 0, run.stderr
    pictures = [
        r
        for q in fake.requests
        if q.endpoint == "batchEmbedContents"
        for r in q.body["requests"]
        if "inline_data" in r["content"]["parts"][0] or "inlineData" in r["content"]["parts"][0]
    ]
    assert len(pictures) == 4  # one picture vector per photo, made by the API
    report = json.loads(cli("indexer", "status", "--json").stdout)
    assert report["indexed"] == 4

    generated = fake.count("generateContent")
    embedded = fake.count("batchEmbedContents")
    probe = garment_image(tmp_path / "probe.png", "blue", size=(300, 300))
    assert names(cli("query", "image", str(probe), "--json", "-n", "2"))[0] == "blue.jpg"
    assert fake.count("generateContent") == generated  # no description of the query photo
    assert fake.count("batchEmbedContents") == embedded + 1  # one embedding request

    # A text query reaches the picture too: only the photo shows the hat is magenta.
    assert names(cli("query", "text", "magenta", "--json", "-n", "1")) == ["magenta.jpg"]
    # Filters apply to every route.
    only_hats = names(cli("query", "text", "red", "-w", "garment=hat", "--json"))
    assert only_hats == ["magenta.jpg"]


def test_thinking_level_resolution_and_usage_are_sent_counted_and_kept(
    photos: Path, fake: FakeGemini
) -> None:
    run = cli("indexer", "run", str(photos), GEMINI_THINKING_LEVEL="minimal")
    assert run.returncode == 0, run.stderr
    sent = [r for r in fake.requests if r.endpoint == "generateContent"]
    assert {r.thinking_level for r in sent} == {"MINIMAL"}
    assert {r.media_resolution for r in sent} == {"MEDIA_RESOLUTION_MEDIUM"}
    # The fake bills 300 + 560 prompt tokens (medium), 40 output and 0 thinking per image.
    assert "tokens: 3,600 (prompt 3,440, output 160, thinking 0), 900 per image" in run.stdout
    assert "4 generation and" in run.stdout

    garment_image(photos / "more" / "white.jpg", "white")
    again = cli("indexer", "run", str(photos))  # thinking level low: 120 thinking tokens
    assert again.returncode == 0, again.stderr
    usage = json.loads(cli("indexer", "status", "--json").stdout)["usage"]
    assert usage["runs"] == 2 and usage["generation_requests"] == 5
    assert usage["thinking_tokens"] == 120 and usage["prompt_tokens"] == 5 * 860


def test_reembed_moves_a_text_only_collection_without_generation(
    photos: Path, fake: FakeGemini
) -> None:
    old = {"GEMINI_EMBEDDING_MODEL": "gemini-embedding-001", "INDEXER_IMAGE_VECTORS": "false"}
    assert cli("indexer", "run", str(photos), **old).returncode == 0
    refused = cli("query", "text", "dress")
    assert refused.returncode == 2
    assert "run `indexer reembed`" in refused.stderr
    assert "GEMINI_EMBEDDING_MODEL=gemini-embedding-001 GEMINI_EMBEDDING_DIM=768" in refused.stderr

    generated = fake.count("generateContent")
    moved = cli("indexer", "reembed", "--json")
    assert moved.returncode == 0, moved.stderr
    summary = json.loads(moved.stdout)
    assert summary["records"] == summary["reembedded"] == summary["pictures"] == 4
    assert summary["generation_requests"] == 0 and summary["switched"]
    assert fake.count("generateContent") == generated
    assert names(cli("query", "text", "magenta", "--json", "-n", "1")) == ["magenta.jpg"]
    assert json.loads(cli("indexer", "status", "--json").stdout)["indexed"] == 4
    assert "already built with" in cli("indexer", "reembed").stderr
    # The keyword partitions were built again in the new space, pictures included.
    store = ImageStore.open(load_settings())
    assert store.partitioned() == store.partitioned(pictures=True) == {"garment", "season"}
    for parts in (store._parts, store._visual_parts):
        assert parts is not None
        hats = parts.collection("garment", "hat")
        assert hats is not None and (hats.metadata or {})["embedding_model"] == "gemini-embedding-2"
    assert names(cli("query", "text", "red", "-w", "garment=hat", "--json")) == ["magenta.jpg"]


def test_a_killed_reembed_leaves_the_old_collection_answering_and_resumes(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    colors = ["red", "green", "blue", "yellow", "orange", "violet", "black", "white"]
    for i in range(16):
        garment_image(folder / f"{i:02d}.png", colors[i % 8], size=(200 + i, 240))
    old = {"GEMINI_EMBEDDING_MODEL": "gemini-embedding-001", "INDEXER_IMAGE_VECTORS": "false"}
    assert cli("indexer", "run", str(folder), **old).returncode == 0

    fake.latency["batchEmbedContents"] = 0.3
    before = fake.count("batchEmbedContents")
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer", "reembed", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while fake.count("batchEmbedContents") < before + 5:  # a few pages staged, not all
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fake.latency.clear()

    # The old collection still answers, with the old model.
    assert len(names(cli("query", "text", "shirt", "--json", "-n", "50", **old))) == 16
    # Before the resume, the catalog changes: a record deleted, a photo moved, one edited.
    with ImageStore.open(
        load_settings(embedding_model="gemini-embedding-001", image_vectors=False),
        exclusive=True,
    ) as live:
        assert live.remove_paths([str(folder / "00.png")]) == 1
    (folder / "00.png").unlink()
    (folder / "sub").mkdir()
    os.rename(folder / "01.png", folder / "sub" / "01.png")
    garment_image(folder / "02.png", "white", size=(300, 240))
    assert cli("indexer", "run", str(folder), **old).returncode == 0
    resumed = cli("indexer", "reembed", "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed"] > 0 and summary["switched"] and summary["records"] == 15
    found = cli("query", "text", "shirt", "--json", "-n", "50")
    paths = sorted(str(h["path"]) for h in json.loads(found.stdout))
    on_disk = sorted(str(p) for p in folder.rglob("*.png"))
    assert paths == on_disk  # nothing back from the dead, no old path, no duplicate
    check = cli("indexer", "check", "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["sound"], check.stdout


def test_keywords_repeated_within_a_facet_are_kept_once() -> None:
    answer = description_from_json(
        {"keywords": {"garment": ["dress", "Dress", " dress", "skirt"]}, "caption": "x"}
    )
    assert answer.keywords == {"garment": ["dress", "skirt"]}


def test_a_gallery_started_before_a_reembed_answers_after_its_switch(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from query.client import QueryClient
    from query.server import create_app

    monkeypatch.setenv("INDEXER_IMAGE_VECTORS", "false")
    assert cli("indexer", "run", str(photos)).returncode == 0
    gallery = TestClient(
        create_app(QueryClient.from_env(), tmp_path / "thumbs", None),
        base_url="http://127.0.0.1",
    )
    before = gallery.get("/api/search", params={"q": "magenta"})
    assert before.status_code == 200
    # The same text model, now with picture vectors: new collections under the same names.
    moved = cli("indexer", "reembed", "--json", INDEXER_IMAGE_VECTORS="true")
    assert moved.returncode == 0 and json.loads(moved.stdout)["switched"], moved.stderr
    after = gallery.get("/api/search", params={"q": "magenta"})
    assert after.status_code == 200, after.text
    assert {h["id"] for h in after.json()} == {h["id"] for h in before.json()}
    assert gallery.get("/api/images").status_code == 200
