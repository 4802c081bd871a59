"""A reembed switching a catalog on a Chroma server while other workers write to it: the
writer leases and the switch fence (store/leases.py). In-process tests of the protocol on
embedded Chroma, then real `indexer` processes on a real server against the fake Gemini,
where nothing written may be lost and no photo described twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromadb.api import ClientAPI

from indexer.records import EmbeddingSpec
from indexer.store.leases import FENCE, WriterLeases, fence_of
from indexer.store.staging import Staging
from tests.conftest import ChromaServer
from tests.fake_gemini import FakeGemini
from tests.test_batch import photos

OLD = {"GEMINI_EMBEDDING_MODEL": "gemini-embedding-001", "INDEXER_IMAGE_VECTORS": "false"}
SPEC = EmbeddingSpec("test", "model-b", 4)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[ClientAPI]:
    import chromadb
    from chromadb.config import Settings

    yield chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False)
    )


def leases(client: ClientAPI, **timing: float) -> WriterLeases:
    return WriterLeases(client, "shop", "test", 0.0, **timing)


def staging(client: ClientAPI, stale_after: float = 60.0) -> Staging:
    staged = Staging(client, "shop", "test", 0.0, SPEC, None)
    staged.stale_after = stale_after
    staged.beat_seconds = 0.05
    client.get_or_create_collection("shop", metadata={"catalog": "shop"})
    staged.open()
    return staged


def test_a_fence_waits_for_a_held_lease_and_gives_up_without_switching(client: ClientAPI) -> None:
    writer = leases(client)
    assert writer.enter() is False  # no fence: the hold is taken at once
    staged = staging(client)
    assert staged.fence(wait_seconds=0.3) is False  # the writer still holds it
    assert fence_of(client, "shop") is None  # and the fence is down again
    writer.leave()
    assert writer.held() == {}
    assert staged.fence(wait_seconds=5) is True
    staged.unfence()


def test_a_writer_waits_while_fenced_and_learns_the_switch_happened(
    client: ClientAPI, caplog: pytest.LogCaptureFixture
) -> None:
    staged = staging(client)
    assert staged.fence(wait_seconds=5) is True
    writer = leases(client)
    waited: list[bool] = []
    entering = threading.Thread(target=lambda: waited.append(writer.enter()))
    entering.start()
    deadline = time.monotonic() + 30
    while "waiting" not in caplog.text:
        assert entering.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    assert writer.held() == {}  # it withdrew its lease to wait
    staged.switch()
    entering.join(timeout=30)
    assert waited == [True]
    assert fence_of(client, "shop") is None
    assert FENCE in (client.get_collection("shop").metadata or {})
    writer.leave()


def test_a_killed_writers_lease_and_a_killed_reembeds_fence_block_nobody_for_long(
    client: ClientAPI,
) -> None:
    dead = leases(client)
    dead._announce()  # announced, then never beat again: the process was killed
    staged = staging(client, stale_after=0.5)
    staged.beat_seconds = 60  # killed before its first beat: the fence's counter stays at 1
    assert staged.fence(wait_seconds=30) is True
    assert dead.held() == {}  # removed as dead
    assert staged._fence is not None
    staged._fence.stop()  # the reembed is killed: the fence stays up, unbeaten
    writer = leases(client, stale_after=0.5)
    assert writer.enter() is True  # it waited until the fence was judged dead
    writer.leave()
    # Judged dead once, not again for each batch: the next hold is taken at once, and the
    # worker no longer drains its batches for it.
    assert writer.fenced() is False
    assert writer.enter() is False
    writer.leave()
    # A fence put up again holds, though its counter starts where the dead one's stood.
    again = staging(client, stale_after=0.5)
    assert again.fence(wait_seconds=30) is True
    assert writer.fenced() is True
    again.unfence()
    # A reembed run again takes the dead fence down before anything else.
    staged._fence = None
    staging(client)
    assert fence_of(client, "shop") is None


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_a_reembed_on_a_server_keeps_what_a_worker_writes_meanwhile_and_pays_nothing_twice(
    server_env: ChromaServer, fake: FakeGemini, tmp_path: Path
) -> None:
    first = photos(tmp_path / "photos" / "a", 6)
    more = photos(tmp_path / "photos" / "b", 24, start=6)
    assert cli("run", str(tmp_path / "photos" / "a"), **OLD).returncode == 0
    fake.latency["generateContent"] = 0.4  # the worker is still at it when the switch comes
    worker = subprocess.Popen(
        [sys.executable, "-m", "indexer", "run", str(tmp_path / "photos" / "b")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **OLD, "INDEXER_BATCH_SIZE": "2"},
    )
    deadline = time.monotonic() + 120
    while fake.count("generateContent") < len(first) + 4:  # it has written a batch or two
        assert worker.poll() is None and time.monotonic() < deadline, worker.stderr
        time.sleep(0.05)
    moved = cli("reembed", "--json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["switched"]
    _, stderr = worker.communicate(timeout=300)
    # The worker either finished before the switch or stopped at it, saying why.
    assert worker.returncode == 0 or "moved catalog" in stderr, stderr
    fake.latency.clear()
    # Configured for the new model, a run picks up what the worker had not reached.
    again = cli("run", str(tmp_path / "photos"))
    assert again.returncode == 0, again.stderr
    status = json.loads(cli("status", "--json").stdout)
    assert status["indexed"] == len(first) + len(more)
    described = fake.described()
    assert len(described) == len(first) + len(more)
    assert max(described.values()) == 1, described  # nothing lost, so nothing paid twice
    check = cli("check", "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["sound"], check.stdout
