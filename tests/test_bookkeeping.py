"""Bookkeeping: re-runs and `status` tell unchanged files by size and mtime
without reading them; roots added by concurrent writers are all kept."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from indexer.config import load_settings
from indexer.records import EmbeddingSpec
from indexer.store import ImageStore
from tests.conftest import Ran, garment_image, in_process
from tests.fake_gemini import FakeGemini


def cli(*args: str) -> Ran:
    return in_process("indexer", *args)


def test_unchanged_files_are_not_read_again(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    red = garment_image(folder / "red.jpg", "red")
    blue = garment_image(folder / "blue.jpg", "blue")
    assert cli("run", str(folder)).returncode == 0
    calls = fake.count("generateContent")

    # Same size and mtime, other bytes: a stat-based check takes it as unchanged, which
    # shows that the file was not read (the content hash would have seen the change).
    stat = red.stat()
    swapped = bytearray(red.read_bytes())
    swapped[-3] ^= 0xFF
    red.write_bytes(bytes(swapped))
    os.utime(red, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = cli("run", str(folder))
    assert again.returncode == 0 and "already indexed 2" in again.stdout
    report = json.loads(cli("status", "--json").stdout)
    assert (report["indexed"], report["pending"]) == (2, 0)

    # A touched file is read and hashed again: known content, no model call, new stat kept.
    os.utime(blue, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = cli("run", str(folder))
    assert touched.returncode == 0 and "already indexed 2" in touched.stdout
    assert fake.count("generateContent") == calls
    garment_image(folder / "new.jpg", "green")
    assert json.loads(cli("status", "--json").stdout)["pending"] == 1


def test_roots_added_by_concurrent_writers_are_all_kept(tmp_path: Path) -> None:
    settings = load_settings(chroma_path=tmp_path / "db", collection="roots")
    spec = EmbeddingSpec("fake", "m", 3)
    ImageStore.open(settings, write=True, spec=spec).close()
    readers = [ImageStore.open(settings) for _ in range(8)]
    start = threading.Barrier(8)

    def add(n: int) -> None:
        start.wait()
        readers[n].roots.remember([f"/catalog/{n}"])

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ImageStore.open(settings).roots.all() == [f"/catalog/{n}" for n in range(8)]
