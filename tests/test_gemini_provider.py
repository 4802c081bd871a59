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
from tests.fake_gemini import API_KEY, FakeGemini


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
    # gemini-embedding-2 takes no task_type: the documented task prefixes say it instead.
    texts_sent = fake.embedded_texts()
    assert [task for task, _ in texts_sent].count("document") == 130
    assert texts_sent[-2:] == [("search result", "a query"), ("sentence similarity", "purple")]
    assert all("taskType" not in r for q in fake.requests for r in q.body.get("requests", []))


def test_the_text_only_model_keeps_its_task_types(
    env: dict[str, str], fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_EMBEDDING_MODEL", "gemini-embedding-001")
    old = GeminiProvider(load_settings())
    old.embed_documents(["a", "b"])
    old.embed_queries(["q"])
    assert fake.embedded_texts() == [
        ("RETRIEVAL_DOCUMENT", "a"),
        ("RETRIEVAL_DOCUMENT", "b"),
        ("RETRIEVAL_QUERY", "q"),
    ]
    assert old.image_spec is None and not old.shared_space
    with pytest.raises(ProviderError, match="embeds text only"):
        old.embed_images([])


def test_every_input_is_its_own_content_and_gets_its_own_vector(
    provider: GeminiProvider, fake: FakeGemini, tmp_path: Path
) -> None:
    images = [
        prepare(read_source(garment_image(tmp_path / f"{c}{i}.png", c)), 768)
        for i, c in enumerate(["red", "blue"] * 4)
    ]
    pictures = provider.embed_images(images)
    texts = provider.embed_documents(["red dress", "blue jeans", "red dress"])
    assert len(pictures) == 8 and len(texts) == 3
    assert pictures[0] == pictures[2] and pictures[0] != pictures[1]  # one vector per image
    assert texts[0] == texts[2] and texts[0] != texts[1]
    batches = [r.body["requests"] for r in fake.requests if r.endpoint == "batchEmbedContents"]
    assert [len(b) for b in batches] == [6, 2, 3]  # at most six images per request
    assert all(len(r["content"]["parts"]) == 1 for b in batches for r in b)
    assert provider.usage.embedding_requests == 3


def test_several_inputs_in_one_content_are_one_vector(
    env: dict[str, str], fake: FakeGemini
) -> None:
    """The wire fact the provider is built around: the service merges the parts of one
    content into ONE vector, so sending a list of strings as one content loses the count."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=fake.base_url))
    texts: list[types.PartUnion] = ["red dress", "blue jeans"]
    merged = client.models.embed_content(model="gemini-embedding-2", contents=texts)
    assert len(merged.embeddings or []) == 1  # two inputs, one vector: the wrong shape
    image: list[types.PartUnion] = [types.Part.from_bytes(data=b"\x89PNG", mime_type="image/png")]
    with pytest.raises(genai.errors.ClientError, match="does not support image input"):
        client.models.embed_content(model="gemini-embedding-001", contents=image)


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
