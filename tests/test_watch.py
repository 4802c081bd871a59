"""`indexer watch` as a real process against a Chroma server: files come, change, move, go."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import ChromaServer, garment_image
from tests.fake_gemini import FakeGemini


def records() -> dict[str, dict[str, Any]]:
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


def watching(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "indexer", "watch", str(folder), "--settle", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_watch_follows_new_changed_moved_and_deleted_images(
    fake: FakeGemini, server_env: ChromaServer, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    garment_image(folder / "first.png", "red")
    proc = watching(folder)
    try:
        eventually(lambda: "first.png" in records(), proc)  # the first pass

        garment_image(folder / "sub" / "new.png", "blue")  # a new image, in a new folder
        eventually(lambda: "new.png" in records(), proc)
        assert records()["new.png"]["keywords"]["color"] == ["blue"]

        garment_image(folder / "first.png", "green")  # edited in place
        eventually(lambda: records()["first.png"]["keywords"]["color"] == ["green"], proc)
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


def stopped(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    return out, errors


def test_a_link_to_the_folder_made_and_removed_leaves_the_catalog_as_it_was(
    fake: FakeGemini, server_env: ChromaServer, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    for i, color in enumerate(["red", "blue", "green"]):
        garment_image(folder / f"{i}.png", color)
    proc = watching(folder)
    try:
        eventually(lambda: len(records()) == 3, proc)
        before = {name: r["path"] for name, r in records().items()}
        os.symlink(".", folder / "loop")
        garment_image(folder / "new.png", "yellow")  # settles after the link does
        eventually(lambda: "new.png" in records(), proc)
        (folder / "loop").unlink()
        garment_image(folder / "later.png", "white")
        eventually(lambda: "later.png" in records(), proc)
        now = {name: r["path"] for name, r in records().items()}
        assert {n: p for n, p in now.items() if n in before} == before
        assert not any("/loop/" in str(p) for p in now.values())
    finally:
        stopped(proc)


def test_a_new_file_deleted_while_its_batch_waits_is_skipped_not_fatal(
    fake: FakeGemini, server_env: ChromaServer, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    proc = watching(folder)
    gate = fake.gates["generateContent"] = threading.Event()
    try:
        assert proc.stderr is not None
        for said in proc.stderr:  # the first pass is done
            if said.startswith("watching"):
                break
        # Three batches of four (INDEXER_BATCH_SIZE): two go in flight and wait at the gate,
        # and the third is read only once the first is written.
        made = [garment_image(folder / f"{i:02d}.png", "red", (200 + i, 240)) for i in range(12)]
        eventually(lambda: fake.count("generateContent") >= 1, proc)
        made[-1].unlink()
        gate.set()
        eventually(lambda: len(records()) == 11, proc)
    finally:
        gate.set()
        out, _ = stopped(proc)
    assert "failed 0" in out


def test_a_storm_of_creates_renames_and_deletes_ends_with_the_catalog_matching_the_folder(
    fake: FakeGemini, server_env: ChromaServer, tmp_path: Path
) -> None:
    import random

    folder = tmp_path / "photos"
    folder.mkdir()
    fake.latency["generateContent"] = 0.05  # batches in flight while the storm goes on
    proc = watching(folder)
    chance = random.Random(7)
    colors = ["red", "blue", "green", "yellow", "black", "white"]
    try:
        for step in range(150):
            present = sorted(folder.rglob("*.png"))
            action = chance.random()
            if action < 0.45 or not present:
                sub = folder / chance.choice(["", "a", "b/c"])
                garment_image(sub / f"{step}.png", chance.choice(colors), (200 + step, 240))
            elif action < 0.7:
                target = folder / chance.choice(["", "a", "d"]) / f"m{step}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(chance.choice(present), target)
            elif action < 0.9:
                chance.choice(present).unlink()
            else:
                gone = folder / chance.choice(["a", "b", "d"])
                shutil.rmtree(gone, ignore_errors=True)
            time.sleep(0.02)
        on_disk = {str(p) for p in folder.rglob("*.png")}
        eventually(
            lambda: {str(r["path"]) for r in records().values()} == on_disk, proc, timeout=120
        )
        assert len(records()) == len(on_disk)  # names are unique, so one record a file
    finally:
        stopped(proc)
    done = subprocess.run(
        [sys.executable, "-m", "indexer", "check", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_quota_spent_for_the_day_stops_watching_with_exit_3_and_loses_nothing(
    fake: FakeGemini, server_env: ChromaServer, tmp_path: Path
) -> None:
    """Watching on would fail every new photo until the quota resets: it stops, the photos
    it could not describe stay pending for the next run."""
    folder = tmp_path / "photos"
    garment_image(folder / "first.png", "red")
    fake.daily_quota["generateContent"] = 1
    proc = watching(folder)
    try:
        eventually(lambda: "first.png" in records(), proc)
        garment_image(folder / "second.png", "blue")
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr
    assert "GenerateRequestsPerDayPerProjectPerModel" in stderr.strip().splitlines()[-1]
    status = subprocess.run(
        [sys.executable, "-m", "indexer", "status", "--json", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    counts = json.loads(status.stdout)
    assert (counts["indexed"], counts["pending"], counts["failed"]) == (1, 1, 0)
