"""Never paying twice in batch mode, with the API's faults injected: creates that time out or
fail with a 5xx after making the job, jobs the API forgets (404), jobs cancelled or expired,
a process killed while replacing one, embedding failures while collecting, an online run
beside an open job, and `reset` with paid jobs open. The `indexer` command on embedded Chroma
against the fake's Batch API (processes where one is killed or two run at once); "paid" is
counted by the fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from tests.fake_gemini import FakeGemini
from tests.test_batch import batch_env, cli, ids, photos, status

__all__ = ["batch_env"]  # the fixture, shared with test_batch

ROOT = Path(__file__).resolve().parents[1]


def check_sound() -> None:
    done = cli("check", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["sound"] is True


def test_a_create_that_times_out_after_making_the_job_is_found_not_made_again(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 4)
    batch_env.inject("batchGenerateContent", "timeout")  # made after the client gave up
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert "1 create(s) unanswered" in done.stderr
    assert len(batch_env.description_jobs()) == 1
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))  # each paid once
    assert status()["indexed"] == 4 and status()["batches"] == []
    check_sound()


def test_a_create_answered_with_a_5xx_is_not_retried_and_its_job_is_collected(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 3)
    batch_env.inject("batchGenerateContent", "503")
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert len(batch_env.description_jobs()) == 1
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))
    assert status()["indexed"] == 3


def test_a_create_refused_with_429_is_retried(batch_env: FakeGemini, tmp_path: Path) -> None:
    images = photos(tmp_path / "photos", 3)
    batch_env.inject("batchGenerateContent", "429", retry_after=0.1)
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert "create(s) unanswered" not in done.stderr
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))
    assert status()["indexed"] == 3


def test_a_job_the_api_no_longer_knows_is_replaced_once_and_later_jobs_are_collected(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    first = photos(tmp_path / "photos" / "a", 3)
    assert cli("run", str(tmp_path / "photos" / "a"), "--batch", "--no-wait").returncode == 0
    second = photos(tmp_path / "photos" / "b", 2, start=10)
    assert cli("run", str(tmp_path / "photos" / "b"), "--batch", "--no-wait").returncode == 0
    batch_env.forget_batch("batches/000001")  # deleted, expired from retention, ...
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert "(1 resubmitted)" in done.stdout
    keys = Counter(batch_env.submitted_keys())
    assert keys == {**{i: 2 for i in ids(first)}, **{i: 1 for i in ids(second)}}
    assert status()["indexed"] == 5 and status()["batches"] == []
    again = cli("run", str(tmp_path / "photos"), "--batch")
    assert again.returncode == 0 and "submitted 0 images" in again.stderr
    assert sum(Counter(batch_env.submitted_keys()).values()) == 8
    check_sound()


def test_a_cancelled_job_is_not_resubmitted(batch_env: FakeGemini, tmp_path: Path) -> None:
    images = photos(tmp_path / "photos", 3)
    assert cli("run", str(tmp_path / "photos"), "--batch", "--no-wait").returncode == 0
    batch_env.batches["batches/000001"].cancelled = True
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 1
    assert "batch job cancelled" in done.stderr
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))
    assert status()["failed"] == 3 and status()["batches"] == []
    check_sound()


def test_an_online_run_leaves_images_in_open_jobs_to_them(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    queued = photos(folder / "queued", 3)
    batch_env.batches_held = True  # the job stays open while the online run goes
    assert cli("run", str(folder / "queued"), "--batch", "--no-wait").returncode == 0
    fresh = photos(folder / "fresh", 2, start=10)
    online = cli("run", str(folder))
    assert online.returncode == 0, online.stderr
    assert "waiting in open batch jobs 3" in online.stdout
    assert batch_env.count("generateContent") == len(fresh)  # only the new ones
    batch_env.batches_held = False
    collected = cli("run", str(folder), "--batch")
    assert collected.returncode == 0, collected.stderr
    assert Counter(batch_env.submitted_keys()) == Counter(ids(queued))
    assert status()["indexed"] == 5
    check_sound()


def test_answers_whose_keywords_cannot_be_mapped_yet_are_kept_and_collected_later(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    """Mapping an off-vocabulary word embeds it (online, once); while that fails, the job's
    answers stay with the job and are collected on a later poll."""
    batch_env.by_color["red"] = {
        "keywords": {"garment": ["tee"], "color": ["crimson"]},
        "caption": "A crimson tee.",
    }
    images = photos(tmp_path / "photos", 3)
    assert cli("run", str(tmp_path / "photos"), "--batch", "--no-wait").returncode == 0
    time.sleep(batch_env.batch_seconds)
    # Every attempt of the first collection fails (INDEXER_MAX_ATTEMPTS is 4 in tests).
    batch_env.inject("batchEmbedContents", "503", count=4)
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert "mapping its keywords failed" in done.stderr
    assert batch_env.count("batchEmbedContents") > 4  # the failed attempts, then the word
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))  # never paid again
    assert status()["indexed"] == 3 and status()["failed"] == 0
    check_sound()


DIE_ON_FORGET = textwrap.dedent(
    """
    import os, signal, sys
    from chromadb.api.models.Collection import Collection
    from indexer.cli import main

    real_delete = Collection.delete

    def delete(self, *args, **kwargs):
        # Chroma's own method: die as the first batch log entry is to be forgotten, once
        # what follows it (a replacement, an embedding job) was created and recorded.
        if self.name.endswith("-batches"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_delete(self, *args, **kwargs)

    Collection.delete = delete
    sys.argv = ["indexer", "run", sys.argv[1], "--batch"]
    main()
    """
)


def killed_forgetting(folder: Path) -> None:
    """`indexer run FOLDER --batch` in a process killed as it forgets a batch log entry."""
    killed = subprocess.run(
        [sys.executable, "-c", DIE_ON_FORGET, str(folder)],
        capture_output=True,
        text=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=180,
    )
    assert killed.returncode < 0, killed.stderr


def test_a_kill_while_replacing_an_expired_job_leaves_one_replacement(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 3)
    batch_env.batch_outcomes.append("expired")
    killed_forgetting(tmp_path / "photos")
    assert len(batch_env.description_jobs()) == 2  # the expired job and its replacement
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert len(batch_env.description_jobs()) == 2
    assert Counter(batch_env.submitted_keys()) == {i: 2 for i in ids(images)}
    assert status()["indexed"] == 3 and status()["batches"] == []
    check_sound()


def test_reset_names_the_open_jobs_it_forgets(batch_env: FakeGemini, tmp_path: Path) -> None:
    photos(tmp_path / "photos", 2)
    assert cli("run", str(tmp_path / "photos"), "--batch", "--no-wait").returncode == 0
    done = cli("reset", "--yes")
    assert done.returncode == 0, done.stderr
    assert "1 open batch job(s) with 2 images, already paid for" in done.stderr
    assert "batches/000001" in done.stderr


def test_two_batch_workers_on_a_server_keep_and_collect_each_others_jobs(
    batch_env: FakeGemini, server_env: object, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 8)
    batch_env.inject("batchGenerateContent", "timeout")  # worker 1's create hangs, then lands

    def worker(k: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "indexer",
                "run",
                str(tmp_path / "photos"),
                "--batch",
                "--shard",
                f"{k}/2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def creating() -> bool:
        done = cli("status", "--json")  # "no collection" until the worker made it
        return done.returncode == 0 and any(
            not j["job"] for j in json.loads(done.stdout)["batches"]
        )

    first = worker(1)
    deadline = time.monotonic() + 120
    while not creating():
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    second = worker(2)  # starts while the first one's job is being created
    outcomes = [p.communicate(timeout=180) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outcomes
    assert len(batch_env.description_jobs()) == 2
    assert Counter(batch_env.submitted_keys()) == Counter(ids(images))
    assert status()["indexed"] == 8 and status()["batches"] == []
    check_sound()
