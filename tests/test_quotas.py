"""The Gemini path at the API's real limits, through the real CLI against the fake server:
a quota spent for the day stops a run at once, and the next day's run finishes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import catalog_counts, garment_image, in_process
from tests.fake_gemini import FakeGemini

COLORS = ["red", "blue", "green", "yellow", "orange", "violet"]


def photos(folder: Path, n: int) -> None:
    for i in range(n):
        garment_image(folder / f"{i:02d}.png", COLORS[i % len(COLORS)], size=(200 + i, 240))


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
    assert catalog_counts() == (5, 25, 0)  # the described ones written, none failed, the rest to do

    fake.new_day()  # and the day's quota is enough for the rest
    fake.daily_quota["generateContent"] = 25
    again = in_process("indexer", "run", str(tmp_path / "photos"))
    assert again.returncode == 0, again.stderr
    assert catalog_counts() == (30, 0, 0)
    assert max(fake.paid().values()) == 1  # never described twice


def test_a_per_minute_quota_keeps_its_backoff(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path
) -> None:
    photos(tmp_path / "photos", 4)
    fake.inject("generateContent", "429", count=3, retry_after=0.05)
    done = in_process("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr
    assert "retrying with backoff" in done.stderr
    assert catalog_counts() == (4, 0, 0)


def test_a_retry_delay_longer_than_the_run_waits_stops_it_too(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INDEXER_RETRY_MAX_WAIT", "30")
    photos(tmp_path / "photos", 4)
    fake.inject("generateContent", "429", count=50, retry_after=3600)  # an hour: no patience
    done = in_process("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "GenerateRequestsPerMinutePerProjectPerModel" in last and "resets in 1 h 0 min" in last
    assert catalog_counts() == (0, 4, 0)


def vocabulary_file(path: Path, extra: int) -> Path:
    """The default vocabulary with `extra` more garment types (a shop's own long list)."""
    from indexer.vocabulary import Vocabulary

    facets = {f: list(words) for f, words in Vocabulary.load().facets.items()}
    facets["garment"] += [f"garment style {i:03d}" for i in range(extra)]
    path.write_text("".join(f"{f} = {json.dumps(words)}\n" for f, words in facets.items()))
    return path


def enum_requests(fake: FakeGemini) -> int:
    return sum(
        1
        for r in fake.requests
        if r.endpoint == "generateContent" and '"enum"' in json.dumps(r.body)
    )


def tagged() -> dict[str, list[str]]:
    export = in_process("indexer", "export", "--format", "jsonl")
    assert export.returncode == 0, export.stderr
    rows = [json.loads(line) for line in export.stdout.splitlines() if line.strip()]
    return {Path(r["path"]).name: r["keywords"]["garment"] for r in rows}


def test_a_vocabulary_too_large_for_enums_is_asked_for_freely_and_mapped(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = vocabulary_file(tmp_path / "vocabulary.toml", 600)
    monkeypatch.setenv("INDEXER_VOCABULARY", str(words))
    photos(tmp_path / "photos", 6)
    done = in_process("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr
    assert enum_requests(fake) == 0  # a known limit: no request the API would refuse
    # The free answer ("tee") mapped onto the vocabulary's keyword.
    assert set(map(tuple, tagged().values())) == {("T-shirt",)}


def test_a_schema_the_api_refuses_is_found_once_and_the_run_goes_on(
    env: dict[str, str], fake: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = vocabulary_file(tmp_path / "vocabulary.toml", 100)  # under the known limit
    monkeypatch.setenv("INDEXER_VOCABULARY", str(words))
    fake.max_schema_enums = 120  # this API refuses it all the same
    photos(tmp_path / "photos", 12)
    done = in_process("indexer", "run", str(tmp_path / "photos"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("describing with free keywords") == 1, done.stderr
    # Only the requests in flight when the first refusal came were refused, not every photo.
    assert enum_requests(fake) <= 4, enum_requests(fake)
    assert catalog_counts() == (12, 0, 0)
    assert set(map(tuple, tagged().values())) == {("T-shirt",)}


@pytest.mark.parametrize(
    "details",
    [
        "not a list",
        [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": "x"}],
        [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [None, 3]}],
        [None, 7, {"@type": 5}],
        [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"}],
    ],
)
def test_a_429_whose_details_are_not_what_they_should_be_is_a_plain_retry(details: object) -> None:
    """An answer in the wrong shape (a proxy, a changed API) is retried like any 429, never
    a crash and never mistaken for a day's quota."""
    from google.genai import errors

    from indexer.errors import QuotaExhaustedError, TransientProviderError
    from indexer.providers.gemini_transport import translate

    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}}
    typed = translate(errors.ClientError(429, body), 60.0)
    assert isinstance(typed, TransientProviderError) and not isinstance(typed, QuotaExhaustedError)
