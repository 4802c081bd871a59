"""`indexer run --batch` embeds through the Batch API as well (`asyncBatchEmbedContent`): no
online embedding of its photos, and the descriptions it paid for survive every fault of the
embedding job (a kill between the two jobs, a create that times out or is refused, a job
that expires, fails or is forgotten). The `indexer` command on embedded Chroma against the
fake's Batch API; what was paid is counted by the fake."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from tests.conftest import in_process
from tests.fake_gemini import FakeGemini
from tests.test_batch import batch_env, cli, ids, photos, status
from tests.test_batch_faults import check_sound, killed_forgetting

__all__ = ["batch_env"]

ROOT = Path(__file__).resolve().parents[1]


def pictures(sent: Counter[str]) -> Counter[str]:
    """The pictures (by digest) among what was sent for embedding."""
    return Counter({k: n for k, n in sent.items() if re.fullmatch(r"[0-9a-f]{64}", k)})


def described_once(fake: FakeGemini, images: list[Path]) -> bool:
    return Counter(fake.submitted_keys()) == Counter(ids(images))


def test_a_batch_run_embeds_its_photos_through_the_batch_api_only(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 6)
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert batch_env.online_embedded(task="document") == Counter()  # no photo's text online
    assert pictures(batch_env.online_embedded()) == Counter()  # nor its picture
    in_jobs = batch_env.batch_embedded()
    assert sum(in_jobs.values()) == 12  # a text and a picture for each photo, once
    assert len(pictures(in_jobs)) == 6 and set(pictures(in_jobs).values()) == {1}
    assert len(batch_env.embedding_jobs()) == 1 and described_once(batch_env, images)
    assert status()["indexed"] == 6 and status()["batches"] == []
    check_sound()
    # The pictures' vectors are the records' own: a photo finds itself.
    found = in_process("query", "image", str(images[2]), "--json", "--limit", "1")
    assert found.returncode == 0, found.stderr
    assert [Path(h["path"]).name for h in json.loads(found.stdout)] == [images[2].name]


def test_a_kill_between_the_two_jobs_makes_no_second_embedding_job_and_loses_nothing(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 3)
    # Killed as the description job's entry is to be forgotten, after the embedding job
    # holding its answers was created and recorded.
    killed_forgetting(tmp_path / "photos")
    assert len(batch_env.embedding_jobs()) == 1
    assert len(status()["batches"]) == 2  # the collected description job, and its follower
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert len(batch_env.embedding_jobs()) == 1 and described_once(batch_env, images)
    assert status()["indexed"] == 3 and status()["batches"] == []
    check_sound()


def test_an_embedding_create_that_times_out_after_making_the_job_is_found_not_made_again(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 3)
    batch_env.inject("asyncBatchEmbedContent", "timeout")  # made after the client gave up
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert len(batch_env.embedding_jobs()) == 1 and described_once(batch_env, images)
    assert batch_env.online_embedded(task="document") == Counter()
    assert status()["indexed"] == 3 and status()["batches"] == []


def test_an_embedding_create_refused_keeps_the_answers_for_the_next_run(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 3)
    # Every attempt refused (INDEXER_MAX_ATTEMPTS is 4 in tests): no job is made.
    batch_env.inject("asyncBatchEmbedContent", "429", count=4, retry_after=0.01)
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode != 0
    held = {j["kind"]: (j["state"], j["images"]) for j in status()["batches"]}
    assert held["embeddings"] == ("unsent", 3)
    assert batch_env.embedding_jobs() == []

    again = cli("run", str(tmp_path / "photos"), "--batch")
    assert again.returncode == 0, again.stderr
    assert "submitted 0 images" in again.stderr  # the answers were kept, not asked again
    assert described_once(batch_env, images) and len(batch_env.embedding_jobs()) == 1
    assert status()["indexed"] == 3 and status()["failed"] == 0 and status()["batches"] == []
    check_sound()


def test_an_expired_embedding_job_is_sent_again_and_no_photo_is_described_again(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 4)
    batch_env.embedding_outcomes.append("expired")
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert "(1 resubmitted)" in done.stdout
    assert len(batch_env.embedding_jobs()) == 2 and described_once(batch_env, images)
    assert set(pictures(batch_env.batch_embedded()).values()) == {2}  # each in both jobs
    assert status()["indexed"] == 4 and status()["batches"] == []


def test_an_embedding_job_the_api_forgot_is_sent_again(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 3)
    batch_env.embedding_outcomes.append("forgotten")  # 404 once it is done
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert len(batch_env.embedding_jobs()) == 2 and described_once(batch_env, images)
    assert status()["indexed"] == 3 and status()["batches"] == []


def test_an_embedding_job_that_fails_twice_is_embedded_online_and_nothing_is_paid_twice(
    batch_env: FakeGemini, tmp_path: Path
) -> None:
    images = photos(tmp_path / "photos", 3)
    batch_env.embedding_outcomes.extend(["expired", "failed"])
    done = cli("run", str(tmp_path / "photos"), "--batch")
    assert done.returncode == 0, done.stderr
    assert len(batch_env.embedding_jobs()) == 2 and described_once(batch_env, images)
    assert sum(batch_env.online_embedded(task="document").values()) == 3
    assert len(pictures(batch_env.online_embedded())) == 3
    assert status()["indexed"] == 3 and status()["failed"] == 0 and status()["batches"] == []
    check_sound()
