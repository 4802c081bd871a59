"""`indexer run --batch` against the fake's Batch API (v1beta: create with inline
or file input, get, list, cancel, upload, download; jobs go pending -> running -> done), the
command run in-process on embedded Chroma, and as a process where one is killed. The fake
counts every request it was sent in a job, so "never pay twice" is checked by counting."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from indexer.images import content_id
from tests.conftest import Ran, garment_image, in_process
from tests.fake_gemini import API_KEY, FakeGemini

COLORS = ["red", "green", "blue", "yellow", "orange", "violet", "black", "white"]


def cli(*args: str, **env: str) -> Ran:
    """`indexer ARGS`, in this process (tests that kill a worker start one)."""
    return in_process("indexer", *args, **env)


def status() -> dict[str, Any]:
    done = cli("status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def batch_env(env: dict[str, str], fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    monkeypatch.setenv("INDEXER_BATCH_POLL_SECONDS", "0.1")
    fake.batch_seconds = 0.6
    return fake


def photos(folder: Path, count: int, start: int = 0) -> list[Path]:
    return [
        garment_image(folder / f"{i:03d}.png", COLORS[i % 8], size=(200 + i, 240))
        for i in range(start, start + count)
    ]


def ids(paths: list[Path]) -> set[str]:
    return {content_id(p.read_bytes()) for p in paths}


def test_a_batch_run_indexes_everything_with_no_online_generation(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 6)
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert "indexed 6" in done.stdout and "batch answers bill at half price" in done.stdout
    assert batch_env.count("generateContent") == 0  # every description came from the job
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))  # each image once
    report = status()
    assert report["indexed"] == 6 and report["batches"] == []
    assert report["usage"]["generation_requests"] == 6


def test_sigkill_while_waiting_then_a_rerun_submits_nothing_again(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 5)
    batch_env.batches_held = True  # still open when the worker is killed
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer", "run", str(tmp_path / "photos"), "--batch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # "batch: submitted ..." comes once the job is recorded
        if line.startswith("batch: submitted"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    open_jobs = status()["batches"]
    assert [j["images"] for j in open_jobs] == [5]

    batch_env.batches_held = False
    again = cli("run", str(tmp_path / "photos"), "--batch")
    assert again.returncode == 0, again.stderr
    assert "submitted 0 images" in again.stderr and "5 already in open jobs" in again.stderr
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))  # zero resubmissions
    assert status()["indexed"] == 5


def test_a_job_created_but_never_recorded_is_adopted_not_paid_again(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    """The state a crash between creating a job and recording its name leaves behind."""
    from indexer.config import load_settings
    from indexer.images import prepare, read_source
    from indexer.providers.gemini import GeminiProvider
    from indexer.store import ImageStore
    from indexer.store.batches import CREATING, BatchEntry
    from indexer.vocabulary import Vocabulary

    images = photos(tmp_path / "photos", 3)
    settings = load_settings()
    provider = GeminiProvider(settings)
    spec = provider.embedding_spec
    display = "clothing-indexer clothing deadrun 1"
    with ImageStore.open(settings, write=True, spec=spec, image_spec=provider.image_spec) as store:
        prepared = [prepare(read_source(p), settings.image_max_side) for p in images]
        store.batches.intend(
            BatchEntry(display, "", CREATING, {i.id: str(i.path) for i in prepared}, 1, "")
        )
    jobs = provider.batch_jobs
    jobs.submit([jobs.request(i, Vocabulary.load()) for i in prepared], display)
    provider.close()

    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert "1 unrecorded job(s) adopted" in done.stderr
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))
    assert status()["indexed"] == 3


def test_an_expired_job_is_submitted_again(batch_env: FakeGemini, tmp_path: Path) -> None:
    images = photos(tmp_path / "photos", 4)
    batch_env.batch_outcomes.append("expired")
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert "(1 resubmitted)" in done.stdout
    # Each image twice: in the job that expired and in the one that replaced it.
    assert Counter(batch_env.submitted_keys()) == {i: 2 for i in ids(images)}
    assert status()["indexed"] == 4


def test_per_request_errors_are_failures_and_the_next_run_retries_only_them(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 4)
    broken = content_id(images[1].read_bytes())
    # The request key is the id of the JPEG sent, the content id of the file: the same.
    batch_env.batch_errors.add(broken)
    first = cli("run", str(tmp_path / "photos"), "--batch")
    assert first.returncode == 1
    assert "001.png: batch request failed: request failed in batch" in first.stderr
    assert status()["failed"] == 1

    batch_env.batch_errors.clear()
    second = cli("run", str(tmp_path / "photos"), "--batch")
    assert second.returncode == 0, second.stderr
    assert "submitted 1 images" in second.stderr
    keys = Counter(batch_env.submitted_keys())
    assert keys[broken] == 2 and sum(keys.values()) == 5
    report = status()
    assert (report["indexed"], report["failed"]) == (4, 0)


def test_no_wait_then_collect_and_a_mixed_folder(batch_env: FakeGemini, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    online = photos(folder / "old", 2)
    assert cli("run", str(folder / "old")).returncode == 0  # indexed online earlier
    fresh = photos(folder / "new", 3, start=10)
    (folder / "junk.jpg").write_bytes(b"not an image")

    submitted = cli("run", str(folder), "--batch", "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip().startswith("batches/")
    jobs = status()["batches"]
    assert len(jobs) == 1 and jobs[0]["images"] == 3
    assert jobs[0]["state"] in {"pending", "running"}

    time.sleep(batch_env.batch_seconds)
    collected = cli("run", str(folder), "--batch")
    assert collected.returncode == 1  # the junk file
    assert "submitted 0 images" in collected.stderr
    assert "junk.jpg: not a recognised image format" in collected.stderr
    assert Counter(batch_env.submitted_keys()) == Counter(ids(fresh))
    report = status()
    assert (report["indexed"], report["failed"], report["batches"]) == (5, 1, [])
    assert not ids(online) & set(batch_env.submitted_keys())


def test_the_fake_serves_file_input_upload_and_download(batch_env: FakeGemini) -> None:
    """The other input form of the Batch API, through the SDK, as the real service has it."""
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(base_url=batch_env.base_url, api_version="v1beta"),
    )
    line = {"key": "k1", "request": {"contents": [{"parts": [{"text": "no image"}]}]}}
    uploaded = client.files.upload(
        file=io.BytesIO(json.dumps(line).encode()),
        config=types.UploadFileConfig(mime_type="application/jsonl"),
    )
    job = client.batches.create(model="gemini-3.8-flash", src=str(uploaded.name))
    time.sleep(batch_env.batch_seconds)
    done = client.batches.get(name=str(job.name))
    assert done.state is not None and done.state.name == "JOB_STATE_SUCCEEDED"
    assert done.dest is not None and done.dest.file_name
    output = client.files.download(file=done.dest.file_name)
    answer = json.loads(output.decode().splitlines()[0])
    assert answer["key"] == "k1" and "no image in request" in answer["error"]["message"]
    client.batches.cancel(name=str(job.name))
    assert [j.name for j in client.batches.list()] == [job.name]
