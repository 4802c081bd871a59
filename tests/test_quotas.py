"""The Gemini path at the API's real limits, through the real CLI against the fake server:
a quota spent for the day stops a run at once, and the next day's run finishes it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import garment_image, in_process
from tests.fake_gemini import FakeGemini

COLORS = ["red", "blue", "green", "yellow", "orange", "violet"]


def photos(folder: Path, n: int) -> None:
    for i in range(n):
        garment_image(folder / f"{i:02d}.png", COLORS[i % len(COLORS)], size=(200 + i, 240))


def counts() -> tuple[int, int, int]:
    status = in_process("indexer", "status", "--json")
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    return found["indexed"], found["pending"], found["failed"]


def test_a_quota_spent_for_the_day_stops_the_run_and_the_next_day_finishes_it(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    photos(tmp_path / "photos", 30)
    fake.daily_quota["generateContent"] = 5
    done = in_process("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Gemini quota GenerateRequestsPerDayPerProjectPerModel"), last
    assert "(limit 5)" in last and "resets in 13 h 21 min" in last and "--batch" in last
    assert "failed:" not in done.stderr and "image(s) failed" not in done.stderr
    assert "indexed 5," in done.stdout  # what was described before the quota is written
    assert "retrying" not in done.stderr  # a day's quota is not waited out
    # No request was repeated after the quota answered: a backoff would have.
    assert max(fake.described().values()) == 1, fake.described()
    assert counts() == (5, 25, 0)  # the described ones written, none failed, the rest to do

    fake.new_day()  # and the day's quota is enough for the rest
    fake.daily_quota["generateContent"] = 25
    again = in_process("indexer", "run", str(tmp_path / "photos"))
    assert again.returncode == 0, again.stderr
    assert counts() == (30, 0, 0)
    assert max(fake.paid().values()) == 1  # never described twice


def test_a_per_minute_quota_keeps_its_backoff(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    photos(tmp_path / "photos", 4)
    fake.inject("generateContent", "429", count=3, retry_after=0.05)
    done = in_process("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr
    assert "retrying with backoff" in done.stderr
    assert counts() == (4, 0, 0)


def test_a_retry_delay_longer_than_the_run_waits_stops_it_too(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path, monkeypatch: object
) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("INDEXER_RETRY_MAX_WAIT", "30")
    photos(tmp_path / "photos", 4)
    fake.inject("generateContent", "429", count=50, retry_after=3600)  # an hour: no patience
    done = in_process("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "GenerateRequestsPerMinutePerProjectPerModel" in last and "resets in 1 h 0 min" in last
    assert counts() == (0, 4, 0)
