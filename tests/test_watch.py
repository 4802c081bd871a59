"""`indexer watch` as a real process against a Chroma server: files come, change, move, go."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ChromaServer, garment_image
from tests.fake_gemini import FakeGemini


def records() -> dict[str, dict[str, object]]:
    """path name -> exported record, read through the CLI like any other tool would."""
    run = subprocess.run(
        [sys.executable, "-m", "indexer", "export", "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "no collection" in run.stderr:
        return {}  # the watcher has not created it yet
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    return {Path(str(r["path"])).name: r for r in rows}


def eventually(check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the watcher did not catch up"
        time.sleep(0.3)


def test_watch_follows_new_changed_moved_and_deleted_images(
    fake: FakeGemini, server_env: ChromaServer, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    garment_image(folder / "first.png", "red")
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer", "watch", str(folder), "--settle", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually(lambda: "first.png" in records(), proc)  # the first pass

        garment_image(folder / "sub" / "new.png", "blue")  # a new image, in a new folder
        eventually(lambda: "new.png" in records(), proc)
        assert records()["new.png"]["keywords"]["color"] == ["blue"]  # type: ignore[index]

        garment_image(folder / "first.png", "green")  # edited in place
        eventually(lambda: records()["first.png"]["keywords"]["color"] == ["green"], proc)  # type: ignore[index]
        assert len(records()) == 2  # the red version's record is gone

        calls = fake.count("generateContent")
        os.rename(folder / "sub" / "new.png", folder / "renamed.png")
        eventually(lambda: set(records()) == {"first.png", "renamed.png"}, proc)
        assert fake.count("generateContent") == calls  # a move costs no model call

        (folder / "first.png").unlink()
        eventually(lambda: set(records()) == {"renamed.png"}, proc)

        garment_image(folder / "gone" / "a.png", "yellow")
        eventually(lambda: "a.png" in records(), proc)
        shutil.rmtree(folder / "gone")  # a whole folder
        eventually(lambda: set(records()) == {"renamed.png"}, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    assert "SIGTERM: finishing the images in hand" in errors
    assert "stopped: indexed 4, removed 2, failed 0" in out
