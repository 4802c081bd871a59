"""The real CLIs, end to end: fake Gemini over HTTP, real Chroma on disk, real image files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from indexer.cli import app as indexer_app
from query.cli import app as query_app
from tests.conftest import ChromaServer, garment_image
from tests.fake_gemini import API_KEY, FakeGemini

runner = CliRunner()

CATALOG = {
    "red": {
        "keywords": {
            "garment": ["dress"],
            "season": ["summer"],
            "color": ["red"],
            "audience": ["women"],
            "material": ["cotton"],
        },
        "caption": "A red cotton summer dress for women.",
    },
    "blue": {
        "keywords": {
            "garment": ["jeans"],
            "season": ["fall"],
            "color": ["blue"],
            "material": ["denim"],
        },
        "caption": "Blue denim jeans.",
    },
    "yellow": {
        "keywords": {"garment": ["dress"], "season": ["spring"], "color": ["yellow"]},
        "caption": "A yellow spring dress.",
    },
    "black": {
        "keywords": {
            "garment": ["coat"],
            "season": ["winter"],
            "color": ["black"],
            "material": ["wool"],
        },
        "caption": "A black wool winter coat.",
    },
    "green": {
        "keywords": {
            "garment": ["shorts"],
            "season": ["summer"],
            "color": ["green"],
            "style": ["sport"],
        },
        "caption": "Green sport shorts for summer.",
    },
}


def index(*args: str) -> Result:
    return runner.invoke(indexer_app, ["run", *args])


def query(*args: str) -> Result:
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
    hits = json.loads(result.stdout)
    assert len(hits) == 3
    assert set(hits[0]) == {"id", "path", "score", "keywords", "caption", "copies"}
    assert hits[0]["path"].endswith("red.jpg")
    assert hits[0]["keywords"]["season"] == ["summer"]
    assert hits[0]["caption"] == CATALOG["red"]["caption"]
    assert hits[0]["score"] > hits[1]["score"] >= hits[2]["score"]


def test_generation_request_uses_structured_output_with_vocabulary_enum(
    catalog: Path, fake: FakeGemini, env: dict[str, str]
) -> None:
    assert index(str(catalog)).exit_code == 0
    request = next(r for r in fake.requests if r.endpoint == "generateContent")
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    facets = config["responseJsonSchema"]["properties"]["keywords"]["properties"]
    assert "violet" in facets["color"]["items"]["enum"]
    assert "T-shirt" in facets["garment"]["items"]["enum"]
    # One call per image gives both keywords and caption; documents embed as such.
    tasks = {task for task, _ in fake.embedded_texts()}
    assert "document" in tasks
    docs = [text for task, text in fake.embedded_texts() if task == "document"]
    assert "dress, women, summer, red, cotton. A red cotton summer dress for women." in docs


def test_where_filters_and_limit(catalog: Path) -> None:
    assert index(str(catalog)).exit_code == 0

    hits = json.loads(query("text", "dress", "--where", "season=summer", "--json").stdout)
    assert {Path(h["path"]).name for h in hits} == {"red.jpg", "green.jpg"}

    both = query("text", "dress", "-w", "season=summer", "-w", "garment=dress", "--json")
    assert [Path(h["path"]).name for h in json.loads(both.stdout)] == ["red.jpg"]

    # Case-insensitive keywords; a limit above the number of matches returns them all.
    hits = json.loads(
        query("text", "dress", "-w", "garment=DRESS", "--limit", "50", "--json").stdout
    )
    assert {Path(h["path"]).name for h in hits} == {"red.jpg", "yellow.jpg"}

    everything = json.loads(query("text", "clothes", "--limit", "50", "--json").stdout)
    assert len(everything) == len(CATALOG)


def test_where_errors_list_what_is_allowed(catalog: Path) -> None:
    assert index(str(catalog)).exit_code == 0
    bad_facet = query("text", "dress", "--where", "seasn=summer")
    assert bad_facet.exit_code == 2
    assert "unknown facet 'seasn'" in bad_facet.output and "season" in bad_facet.output
    bad_value = query("text", "dress", "--where", "season=monsoon")
    assert bad_value.exit_code == 2
    assert "fall, winter, spring, summer" in bad_value.output
    malformed = query("text", "dress", "--where", "season")
    assert malformed.exit_code == 2 and "FACET=VALUE" in malformed.output


def test_table_output(catalog: Path) -> None:
    assert index(str(catalog)).exit_code == 0
    result = query("text", "black winter coat", "--limit", "1")
    assert result.exit_code == 0
    assert "black.jpg" in result.output and "winter" in result.output


def test_rerun_makes_no_generation_calls_and_follows_moves(
    catalog: Path, fake: FakeGemini, tmp_path: Path
) -> None:
    assert index(str(catalog)).exit_code == 0
    calls, embeds = fake.count("generateContent"), fake.count("batchEmbedContents")

    again = index(str(catalog))
    assert again.exit_code == 0
    assert "indexed 0, already indexed 5" in again.output
    assert fake.count("generateContent") == calls
    assert fake.count("batchEmbedContents") == embeds  # vocabulary vectors come from cache

    moved = tmp_path / "moved" / "red-renamed.jpg"
    moved.parent.mkdir()
    shutil.move(catalog / "nested" / "red.jpg", moved)
    result = index(str(catalog), str(moved.parent))
    assert result.exit_code == 0 and "moved 1" in result.output
    assert fake.count("generateContent") == calls
    hits = json.loads(query("text", "red dress", "--limit", "1", "--json").stdout)
    assert hits[0]["path"] == str(moved)


def test_same_bytes_in_two_places_are_one_record(catalog: Path, fake: FakeGemini) -> None:
    shutil.copy(catalog / "nested" / "red.jpg", catalog / "red-copy.jpg")
    result = index(str(catalog))
    assert result.exit_code == 0 and "duplicates 1" in result.output
    assert fake.count("generateContent") == 5


def test_transient_faults_are_retried(catalog: Path, fake: FakeGemini) -> None:
    fake.inject("generateContent", "429", retry_after=0.2)
    fake.inject("generateContent", "500")
    fake.inject("generateContent", "503")
    fake.inject("generateContent", "timeout")
    fake.inject("generateContent", "truncated")
    fake.inject("batchEmbedContents", "429", retry_after=0.1)
    fake.inject("batchEmbedContents", "500")
    result = index(str(catalog))
    assert result.exit_code == 0, result.output
    assert "indexed 5" in result.output and "failed 0" in result.output
    assert fake.count("generateContent") == 5 + 5


def test_bad_answers_and_bad_files_are_recorded_and_the_run_goes_on(
    catalog: Path, fake: FakeGemini
) -> None:
    garment_image(catalog / "blocked.png", "magenta")
    garment_image(catalog / "garbled.png", "cyan")
    garment_image(catalog / "nothing.png", "grey")
    fake.by_color.update({"magenta": "blocked", "cyan": "malformed", "grey": "empty"})
    (catalog / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (catalog / "empty.jpg").write_bytes(b"")
    (catalog / "notes.jpg").write_text("shopping list: socks\n")

    result = index(str(catalog))
    assert result.exit_code == 1
    assert "indexed 5" in result.output and "failed 6" in result.output
    reasons = {
        line.split(": ", 1)[0].strip().rsplit("/", 1)[-1]: line.split(": ", 1)[1]
        for line in result.output.splitlines()
        if line.startswith("  ") and ": " in line
    }
    assert "blocked" in reasons["blocked.png"]
    assert "not valid JSON" in reasons["garbled.png"]
    assert "no candidates" in reasons["nothing.png"]
    assert "truncated or corrupt" in reasons["corrupt.jpg"]
    assert "not a recognised image format" in reasons["notes.jpg"]
    assert "empty file" in reasons["empty.jpg"]

    status = runner.invoke(indexer_app, ["status"])
    assert status.exit_code == 0
    assert "5 indexed, 0 pending, 6 failed" in status.output
    assert "notes.jpg: not a recognised image format" in status.output

    # The next run retries exactly the failed images; fixed ones leave the failure log.
    calls = fake.count("generateContent")
    fake.by_color["magenta"] = CATALOG["red"]
    rerun = index(str(catalog))
    assert rerun.exit_code == 1
    assert fake.count("generateContent") == calls + 3
    assert "indexed 1" in rerun.output and "failed 5" in rerun.output
    status = runner.invoke(indexer_app, ["status"])
    assert "6 indexed, 0 pending, 5 failed" in status.output and "blocked.png" not in status.output


def test_status_counts_pending_images_in_the_indexed_folders(catalog: Path) -> None:
    assert index(str(catalog)).exit_code == 0
    garment_image(catalog / "new" / "orange.png", "orange")  # not indexed yet
    garment_image(catalog / "new" / "white.png", "white")
    # A copy of an indexed photo is not pending: its bytes are indexed.
    shutil.copy(catalog / "nested" / "red.jpg", catalog / "new" / "red-copy.jpg")
    (catalog / "new" / "broken.jpg").write_bytes(b"junk")  # pending until a run records it

    status = runner.invoke(indexer_app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert (report["indexed"], report["pending"], report["failed"]) == (5, 3, 0)
    assert report["roots"] == [str(catalog.absolute())]

    assert index(str(catalog)).exit_code == 1
    report = json.loads(runner.invoke(indexer_app, ["status", "--json"]).stdout)
    assert (report["indexed"], report["pending"], report["failed"]) == (7, 0, 1)
    assert report["failures"][0]["path"].endswith("broken.jpg")
    # Pending is relative to the folders asked about.
    other = catalog.parent / "elsewhere"
    garment_image(other / "x.png", "cyan")
    assert (
        json.loads(runner.invoke(indexer_app, ["status", str(other), "--json"]).stdout)["pending"]
        == 1
    )


def test_exhausted_retries_fail_the_image_not_the_run(
    catalog: Path, fake: FakeGemini, env: dict[str, str]
) -> None:
    # INDEXER_MAX_ATTEMPTS is 4: the image meets four 503s in a row and gives up.
    fake.inject("generateContent", "503", count=4)
    result = index(str(catalog / "nested" / "red.jpg"))
    assert result.exit_code == 1
    assert "indexed 0" in result.output and "failed 1" in result.output
    assert "HTTP 503" in result.output
    assert fake.count("generateContent") == 4
    result = index(str(catalog))
    assert result.exit_code == 0 and "indexed 5" in result.output


def test_keyword_correction_end_to_end(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    fake.by_color["violet"] = {
        "keywords": {"garment": ["tee"], "color": ["purple"], "style": ["spaceship"]},
        "caption": "A purple tee.",
    }
    photo = garment_image(tmp_path / "top.png", "violet")
    assert index(str(photo)).exit_code == 0
    hit = json.loads(query("text", "violet top", "--json", "--limit", "1").stdout)[0]
    assert hit["keywords"]["garment"] == ["T-shirt"]
    assert hit["keywords"]["color"] == ["violet"]
    assert hit["keywords"]["style"] == []
    # Found by the corrected keyword, not only by the model's word.
    assert len(json.loads(query("text", "x", "-w", "color=violet", "--json").stdout)) == 1


def test_query_image_finds_similar_and_is_not_added(catalog: Path, tmp_path: Path) -> None:
    assert index(str(catalog)).exit_code == 0
    probe = garment_image(tmp_path / "probe" / "another-red.png", "red", size=(500, 300))
    result = query("image", str(probe), "--json", "--limit", "2")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert Path(hits[0]["path"]).name == "red.jpg"
    # Same description, so the same document vector; with the local image model installed
    # the (near-identical) picture's vector is averaged in.
    assert hits[0]["score"] > 0.95
    assert hits[1]["score"] < hits[0]["score"] - 0.1
    status = runner.invoke(indexer_app, ["status"])
    assert "5 indexed" in status.output

    missing = query("image", str(tmp_path / "nope.jpg"))
    assert missing.exit_code == 2 and "nope.jpg" in missing.output


def test_embedding_model_mismatch_is_refused(
    catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert index(str(catalog)).exit_code == 0
    monkeypatch.setenv("GEMINI_EMBEDDING_DIM", "256")
    result = query("text", "red dress")
    assert result.exit_code == 2
    assert "built with gemini:gemini-embedding-2 (768-d)" in result.output
    monkeypatch.setenv("GEMINI_EMBEDDING_DIM", "768")
    monkeypatch.setenv("GEMINI_EMBEDDING_MODEL", "other-embedding")
    assert query("text", "red dress").exit_code == 2
    # Writing into it with another model is refused too.
    refused = index(str(catalog))
    assert refused.exit_code == 2 and "other-embedding" in refused.output


def test_query_before_indexing_is_a_clear_error(env: dict[str, str]) -> None:
    result = query("text", "dress")
    assert result.exit_code == 2
    assert "no collection 'clothing'" in result.output and "indexer run" in result.output


def test_missing_api_key_with_gemini_is_a_clear_error(
    catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY")
    result = index(str(catalog), "--provider", "gemini")
    assert result.exit_code == 2
    assert "GOOGLE_API_KEY" in result.output


def test_gemini_api_key_is_accepted_too(
    catalog: Path, fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    result = index(str(catalog))
    assert result.exit_code == 0, result.output
    assert fake.count("generateContent") == 5  # described by Gemini, not the offline models


def test_chroma_server_mode(
    catalog: Path, chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = chroma_server.host, chroma_server.port
    monkeypatch.setenv("CHROMA_HOST", host)
    monkeypatch.setenv("CHROMA_PORT", str(port))
    result = index(str(catalog))
    assert result.exit_code == 0, result.output
    assert f"http://{host}:{port}" in result.output
    hits = json.loads(query("text", "dress", "-w", "season=summer", "--json").stdout)
    assert {Path(h["path"]).name for h in hits} == {"red.jpg", "green.jpg"}
    again = index(str(catalog))
    assert "indexed 0, already indexed 5" in again.output


def test_real_photos_from_the_dataset(
    dataset: Path, fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    photos = tmp_path / "sample"
    for cls in ("dress", "hat", "pants", "shoes"):
        for src in sorted((dataset / "validation" / cls).glob("*.jpg"))[:3]:
            (photos / cls).mkdir(parents=True, exist_ok=True)
            (photos / cls / src.name).symlink_to(src)
    result = index(str(photos))
    assert result.exit_code == 0, result.output
    assert "indexed 12" in result.output
    sizes = [r.image_size for r in fake.requests if r.endpoint == "generateContent"]
    assert len(sizes) == 12 and all(s is not None and max(s) <= 768 for s in sizes)
    any_photo = next(photos.rglob("*.jpg"))
    hits = json.loads(query("image", str(any_photo), "--json", "--limit", "12").stdout)
    assert len(hits) == 12
    assert str(any_photo) in {h["path"] for h in hits}


def test_installed_commands_run_as_processes(catalog: Path, fake: FakeGemini) -> None:
    """The console entry points, as a user or a cron job would start them."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    run = subprocess.run(
        [sys.executable, "-m", "indexer", "run", str(catalog)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "indexed 5" in run.stdout
    found = subprocess.run(
        [sys.executable, "-m", "query", "text", "black winter coat", "--json", "-n", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert Path(json.loads(found.stdout)[0]["path"]).name == "black.jpg"
    assert ("search result", "black winter coat") in fake.embedded_texts()


def test_missing_path_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    result = index(str(tmp_path / "no-such-folder"))
    assert result.exit_code == 2 and "no such file or directory" in result.output


def test_status_sums_up_many_failures_of_one_reason(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i:02d}.jpg").write_text(f"not an image {i}")
    (folder / "empty.jpg").write_bytes(b"")
    assert index(str(folder)).exit_code == 1
    status = runner.invoke(indexer_app, ["status"])
    assert status.exit_code == 0
    lines = status.output.splitlines()
    assert "40 files: not a recognised image format (e.g." in status.output
    assert any(text.endswith("empty.jpg: empty file (0 bytes)") for text in lines)
    assert len(lines) < 10
    listed = json.loads(runner.invoke(indexer_app, ["status", "--json"]).output)
    assert len(listed["failures"]) == 41
