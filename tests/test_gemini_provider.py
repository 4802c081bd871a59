"""GeminiProvider against the fake server over real HTTP: shapes, retries, failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.config import load_settings
from indexer.errors import (
    BlockedResponseError,
    MalformedResponseError,
    ProviderError,
    TransientProviderError,
)
from indexer.images import PreparedImage, prepare, read_source
from indexer.providers.base import Description
from indexer.providers.gemini import GeminiProvider
from indexer.vocabulary import Vocabulary
from tests.conftest import garment_image
from tests.fake_gemini import FakeGemini


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(env: dict[str, str], sleeps: list[float]) -> Iterator[GeminiProvider]:
    p = GeminiProvider(load_settings(), sleep=sleeps.append)
    yield p
    p.close()


@pytest.fixture
def red(tmp_path: Path) -> PreparedImage:
    return prepare(read_source(garment_image(tmp_path / "red.png", "red")), 768)


VOCAB = Vocabulary.load()


def test_describe_returns_keywords_and_caption(
    provider: GeminiProvider, red: PreparedImage
) -> None:
    [answer] = provider.describe([red], VOCAB)
    assert answer == Description(
        {"garment": ["T-shirt"], "color": ["red"]}, "A red cotton T-shirt."
    )


def test_429_waits_at_least_retry_after(
    provider: GeminiProvider, red: PreparedImage, fake: FakeGemini, sleeps: list[float]
) -> None:
    fake.inject("generateContent", "429", retry_after=1.5)
    [answer] = provider.describe([red], VOCAB)
    assert isinstance(answer, Description)
    assert fake.count("generateContent") == 2
    assert len(sleeps) == 1 and sleeps[0] >= 1.5


def test_server_errors_back_off_exponentially(
    provider: GeminiProvider, red: PreparedImage, fake: FakeGemini, sleeps: list[float]
) -> None:
    fake.inject("generateContent", "500")
    fake.inject("generateContent", "503", count=2)
    [answer] = provider.describe([red], VOCAB)
    assert isinstance(answer, Description)
    assert fake.count("generateContent") == 4
    # initial 0.05 s doubling, plus up to 0.05 s of jitter
    assert [round(s, 2) >= base for s, base in zip(sleeps, (0.05, 0.1, 0.2), strict=True)] == [
        True,
        True,
        True,
    ]
    assert sleeps[2] <= 0.2 + 0.05 + 1e-9


def test_timeout_is_retried(provider: GeminiProvider, red: PreparedImage, fake: FakeGemini) -> None:
    fake.inject("generateContent", "timeout")
    [answer] = provider.describe([red], VOCAB)
    assert isinstance(answer, Description)
    assert fake.count("generateContent") == 2


def test_gives_up_after_max_attempts(
    provider: GeminiProvider, red: PreparedImage, fake: FakeGemini
) -> None:
    fake.inject("generateContent", "429", count=10)
    [answer] = provider.describe([red], VOCAB)
    assert isinstance(answer, TransientProviderError) and "429" in str(answer)
    assert fake.count("generateContent") == 4  # INDEXER_MAX_ATTEMPTS


@pytest.mark.parametrize(
    ("kind", "error", "text"),
    [
        ("blocked", BlockedResponseError, "blocked by the API: SAFETY"),
        ("safety", BlockedResponseError, "finish reason SAFETY"),
        ("empty", MalformedResponseError, "no candidates"),
        ("malformed", MalformedResponseError, "not valid JSON"),
    ],
)
def test_bad_answers_fail_that_image_only_and_are_not_retried(
    provider: GeminiProvider,
    tmp_path: Path,
    fake: FakeGemini,
    kind: str,
    error: type,
    text: str,
) -> None:
    images = [
        prepare(read_source(garment_image(tmp_path / f"{c}.png", c)), 768) for c in ("red", "blue")
    ]
    fake.by_color["red"] = kind
    bad, good = provider.describe(images, VOCAB)
    assert isinstance(bad, error) and text in str(bad)
    assert isinstance(good, Description)
    assert fake.count("generateContent") == 2


def test_invalid_key_is_not_retried(
    provider: GeminiProvider, red: PreparedImage, fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "wrong")
    wrong = GeminiProvider(load_settings())
    [answer] = wrong.describe([red], VOCAB)
    assert type(answer) is ProviderError and "API key not valid" in str(answer)
    assert fake.count("generateContent") == 1


def test_embeddings_are_batched_normalised_and_typed(
    provider: GeminiProvider, fake: FakeGemini
) -> None:
    texts = [f"text {i}" for i in range(130)]
    vectors = provider.embed_documents(texts)
    assert len(vectors) == 130 and all(len(v) == 768 for v in vectors)
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-6
    assert fake.count("batchEmbedContents") == 2  # at most 100 per request
    provider.embed_queries(["a query"])
    provider.embed_words(["purple"])
    tasks = [task for task, _ in fake.embedded_texts()]
    assert tasks.count("RETRIEVAL_DOCUMENT") == 130
    assert tasks[-2:] == ["RETRIEVAL_QUERY", "SEMANTIC_SIMILARITY"]


def test_wrong_embedding_dimension_is_an_error(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.inject("batchEmbedContents", "wrong_dim")
    with pytest.raises(MalformedResponseError, match="767 dimensions, expected 768"):
        provider.embed_documents(["x"])


def test_truncated_embedding_body_is_retried(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.inject("batchEmbedContents", "truncated")
    assert len(provider.embed_documents(["x"])) == 1
    assert fake.count("batchEmbedContents") == 2


def test_rate_limit_spaces_requests(
    env: dict[str, str], red: PreparedImage, fake: FakeGemini
) -> None:
    # 120 per minute allows 2 per second: 5 requests need two refills of the bucket.
    slow = GeminiProvider(load_settings(generation_rpm=120, concurrency=5))
    try:
        slow.describe([red] * 5, VOCAB)
    finally:
        slow.close()
    stamps = sorted(r.arrived for r in fake.requests if r.endpoint == "generateContent")
    # Without the limiter all five would arrive at once; a slow machine only spreads them more.
    assert stamps[-1] - stamps[0] >= 1.5
