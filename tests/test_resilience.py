"""Sharded workers, SIGKILL, a restarting Chroma server, junk files, a faulty API.

The indexer runs as real processes (`python -m indexer`) against the fake Gemini server and
real Chroma, embedded on disk or a `chroma run` server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from indexer.config import load_settings
from indexer.errors import ConfigError
from indexer.images import content_id
from indexer.pipeline import Shard
from indexer.store import ImageStore
from tests.conftest import ChromaServer, garment_image
from tests.fake_gemini import FakeGemini

COLORS = ["red", "green", "blue", "yellow", "orange", "violet", "black", "white"]


def photos(folder: Path, count: int) -> list[Path]:
    """`count` synthetic photos with distinct bytes (colour and size vary)."""
    return [
        garment_image(folder / f"{i:03d}.png", COLORS[i % len(COLORS)], size=(200 + i, 240 + i % 7))
        for i in range(count)
    ]


def indexer(*args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "indexer", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    out, errors = proc.communicate(timeout=timeout)
    return proc.returncode, out + errors


def status_json() -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "indexer", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def assert_complete(expected_ids: set[str]) -> None:
    """Every expected image has exactly one record, and no record lacks a part."""
    from chromadb.api.client import SharedSystemClient

    # Embedded Chroma caches a store per path in-process; the indexer processes have
    # written to it since, so read it afresh.
    SharedSystemClient.clear_system_cache()
    store = ImageStore.open(load_settings())
    records = list(store.records(vectors=True))
    SharedSystemClient.clear_system_cache()
    assert sorted(r.id for r in records) == sorted(expected_ids)
    spec = store.spec
    pictured = store.image_spec is not None
    for r in records:
        assert r.caption, r
        assert any(r.keywords.values()), r
        assert r.embedding is not None and len(r.embedding) == spec.dim
        assert abs(float(np.linalg.norm(r.embedding)) - 1.0) < 1e-3
        assert Path(r.path).is_absolute()
        if pictured:
            assert r.image_embedding is not None, f"{r.path} lacks its image vector"


def ids_of(paths: list[Path]) -> set[str]:
    return {content_id(p.read_bytes()) for p in paths}


# --- shards ---


def test_shards_partition_every_id() -> None:
    shards = [Shard.parse(f"{k}/3") for k in (1, 2, 3)]
    ids = [content_id(str(i).encode()) for i in range(300)]
    owners = [[s for s in shards if s.owns(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)
    # Roughly even: each worker gets a fair share.
    assert all(60 < sum(o[0] is s for o in owners) < 140 for s in shards)


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_bad_shard_specs_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="shard"):
        Shard.parse(text)


def test_sharded_workers_index_everything_exactly_once(
    fake: FakeGemini, server_env: ChromaServer, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    images = photos(folder, 18)
    (folder / "copy.png").write_bytes(images[0].read_bytes())
    (folder / "junk.jpg").write_bytes(b"not an image")

    workers = [indexer("run", str(folder), "--shard", f"{k}/3") for k in (1, 2, 3)]
    results = [finish(w) for w in workers]
    assert sorted(code for code, _ in results) == [0, 0, 1], results  # one owns the junk
    indexed = [int(out.split("indexed ", 1)[1].split(",")[0]) for _, out in results]
    assert sum(indexed) == 18
    assert all("left to other shards" in out for _, out in results)

    # No image was described or embedded twice, by the same worker or by two.
    # (Every photo has its own size, so the sizes the model saw tell the photos apart.)
    seen = [r.image_size for r in fake.requests if r.endpoint == "generateContent"]
    assert len(seen) == len(set(seen)) == 18
    documents = [t for task, t in fake.embedded_texts() if task == "document"]
    assert len(documents) == 18
    report = status_json()
    assert (report["indexed"], report["pending"], report["failed"]) == (18, 0, 1)
    assert_complete(ids_of(images))

    # Running the shards again does nothing at all.
    again = [finish(indexer("run", str(folder), "--shard", f"{k}/3")) for k in (1, 2, 3)]
    assert all("indexed 0," in out for _, out in again)
    assert fake.count("generateContent") == 18  # the junk file never reaches the model


# --- nothing lost ---


def wait_for(
    condition: Callable[[], object], proc: subprocess.Popen[str], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {finish(proc)}")
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def test_sigkill_at_any_moment_then_rerun_finishes_the_job(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    fake.latency = {"generateContent": 0.1}
    folder = tmp_path / "photos"
    images = photos(folder, 30)
    (folder / "000-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")  # first in the order

    # INDEXER_BATCH_SIZE is 4 and two batches are in flight: batch 3 starts its model calls
    # only after batch 1 (the corrupt file and 3 photos) is written. So once a run made
    # 3 + 4 + 1 calls, the corrupt file's failure is on disk; each kill lands a little later.
    kills = 0
    for threshold in (8, 10, 9):
        before = fake.count("generateContent")
        proc = indexer("run", str(folder))
        wanted = before + threshold
        wait_for(lambda: fake.count("generateContent") >= wanted, proc)  # noqa: B023
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        report = status_json()
        assert report["failed"] == 1
        assert report["failures"][0]["path"].endswith("000-corrupt.jpg")
        assert report["indexed"] + report["pending"] == 30
        assert report["pending"] > 0

    code, output = finish(indexer("run", str(folder)))
    assert code == 1, output  # the corrupt file still fails, with its reason
    assert "image data is truncated or corrupt" in output or "cannot decode" in output
    report = status_json()
    assert (report["indexed"], report["pending"], report["failed"]) == (30, 0, 1)
    assert_complete(ids_of(images))
    # Killed runs lose at most the batches in flight: little work is ever done twice.
    assert fake.count("generateContent") <= 30 + kills * 8


def test_a_chroma_server_restart_mid_run_is_waited_out(
    fake: FakeGemini, server_env: ChromaServer, tmp_path: Path
) -> None:
    chroma_server = server_env
    fake.latency = {"generateContent": 0.1}
    folder = tmp_path / "photos"
    images = photos(folder, 24)
    proc = indexer("run", str(folder), "--verbose")
    wait_for(lambda: fake.count("generateContent") >= 6, proc)
    chroma_server.stop()
    time.sleep(1.5)  # the worker meets a dead server for a while
    chroma_server.start()
    code, output = finish(proc)
    assert code == 0, output
    assert "unreachable" in output and "retrying" in output  # it did notice the outage
    assert "indexed 24," in output
    assert_complete(ids_of(images))


# --- bad input ---


def huge_png(path: Path, side: int = 30_000) -> Path:
    """A valid 1-bit PNG of side x side pixels: a few hundred KiB that would decode to GiBs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    row = b"\x00" + bytes((side + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def test_every_kind_of_bad_file_gets_a_one_line_reason_and_the_run_goes_on(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    good = garment_image(tmp_path / "good.jpg", "red")
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is a shopping list, not a photo\n")
    huge_png(folder / "bomb.png")
    unreadable = garment_image(folder / "unreadable.jpg", "white")
    unreadable.chmod(0)
    os.symlink(folder / "loop-b.jpg", folder / "loop-a.jpg")
    os.symlink(folder / "loop-a.jpg", folder / "loop-b.jpg")
    os.symlink(tmp_path / "gone.jpg", folder / "vanished.jpg")  # listed, then not there
    latin1 = Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.jpg"))
    garment_image(latin1, "green")
    # Unusual but valid: these must be indexed.
    Image.new("CMYK", (300, 400), (0, 255, 255, 0)).save(folder / "cmyk.jpg")  # red
    Image.new("I;16", (300, 400), 33000).save(folder / "grey16.png")
    palette = Image.new("P", (300, 400), 1)
    palette.putpalette([255, 255, 255, 30, 60, 200] + [0, 0, 0] * 254)  # index 1: blue
    palette.paste(0, (0, 0, 40, 40))
    palette.save(folder / "palette.png", transparency=0)
    frames = [Image.new("RGB", (300, 400), c) for c in ((30, 160, 60), (200, 30, 30))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    rotated = Image.new("RGB", (480, 240), (240, 140, 20))  # stored sideways, orange
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif.tobytes())

    code, output = finish(indexer("run", str(folder)))
    assert code == 1, output
    root = os.geteuid() == 0  # root reads a mode-000 file anyway
    bad = {
        "truncated.jpg": "truncated or corrupt",
        "zero.jpg": "empty file (0 bytes)",
        "text.jpg": "not a recognised image format",
        "bomb.png": "too large to decode safely (900000000 pixels",
        "loop-a.jpg": "Too many levels of symbolic links",
        "loop-b.jpg": "Too many levels of symbolic links",
        "vanished.jpg": "broken symbolic link",
        "caf\\xe9.jpg": "file name is not valid UTF-8",
        **({} if root else {"unreadable.jpg": "Permission denied"}),
    }
    indexed = 5 + (1 if root else 0)
    assert f"indexed {indexed}," in output and f"failed {len(bad)}" in output
    report = status_json()
    reasons = {Path(f["path"]).name: f["reason"] for f in report["failures"]}
    assert set(reasons) == set(bad)
    for name, expected in bad.items():
        assert expected in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    # The EXIF-rotated photo reached the model upright (portrait), the others in colour.
    sizes = {r.color: r.image_size for r in fake.requests if r.endpoint == "generateContent"}
    assert sizes["orange"] == (240, 480)
    assert {"red", "blue", "green", "orange", "grey"} <= set(sizes)


# --- faulty API ---


def test_a_faulty_api_never_crashes_loses_or_half_writes_an_image(
    fake: FakeGemini, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INDEXER_MAX_ATTEMPTS", "20")  # a storm outlasts the default budget
    folder = tmp_path / "photos"
    images = photos(folder, 16)
    scripted = {
        "magenta": ("blocked", "blocked"),
        "cyan": ("safety", "SAFETY"),
        "grey": (
            {"keywords": {"garment": ["spaceship"], "style": ["quantum"]}, "caption": "A thing."},
            "no keyword fits the vocabulary: spaceship, quantum",
        ),
    }
    for color, (answer, _) in scripted.items():
        fake.by_color[color] = answer
        garment_image(folder / f"{color}.png", color)
    fake.inject("generateContent", "429", count=12, retry_after=0.05)
    for kind in ("500", "503", "timeout", "truncated", "empty", "malformed"):
        fake.inject("generateContent", kind)
    fake.inject("batchEmbedContents", "429", count=3, retry_after=0.05)
    for kind in ("500", "truncated", "wrong_dim"):
        fake.inject("batchEmbedContents", kind)

    code, output = finish(indexer("run", str(folder)))
    assert code == 1, output
    assert "Traceback" not in output
    report = status_json()
    failures = {Path(f["path"]).stem: f["reason"] for f in report["failures"]}
    # Nothing is lost: every photo is indexed or recorded with its reason.
    assert report["indexed"] + report["failed"] == 19 and report["pending"] == 0
    for color, (_, reason) in scripted.items():
        assert reason in failures[color]
    # Only answers that cannot be retried fail: one empty, one malformed, one embedding batch.
    assert len(failures) <= 3 + 2 + 4
    good = [p for p in images if p.stem not in failures]
    assert_complete(ids_of(good))

    code, output = finish(indexer("run", str(folder)))  # the API has recovered
    report = status_json()
    assert (report["indexed"], report["failed"]) == (16, 3)
    assert_complete(ids_of(images))
