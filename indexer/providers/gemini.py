"""Gemini provider: one structured-output call per image, batched embeddings.

Requests go through a per-minute limiter (the API's quotas are requests per minute) and are
retried by tenacity on 429, 5xx, timeouts and dropped connections, with exponential backoff
and jitter, waiting at least as long as the server's Retry-After asks.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pyrate_limiter import Duration, Limiter, Rate
from tenacity import (
    RetryCallState,
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from indexer.errors import (
    BlockedResponseError,
    ConfigError,
    MalformedResponseError,
    ProviderError,
    TransientProviderError,
)
from indexer.images import PreparedImage
from indexer.providers.base import Provider
from indexer.records import Description, EmbeddingSpec, Usage
from indexer.vocabulary import Vocabulary

if TYPE_CHECKING:
    from google import genai

    from indexer.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
BLOCKING_FINISH = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "LANGUAGE",
    }
)
MAX_EMBED_BATCH = 100  # batchEmbedContents accepts at most 100 requests
# gemini-embedding-2 takes at most six images in one request.
MAX_IMAGES_PER_EMBED_REQUEST = 6
# Models that embed text and images into one space. They take no task_type: the task is
# written into the text, in the documented forms below.
MULTIMODAL_EMBEDDING_MODELS = ("gemini-embedding-2",)
TASK_PREFIXES = {
    "RETRIEVAL_DOCUMENT": "title: none | text: {}",
    "RETRIEVAL_QUERY": "task: search result | query: {}",
    "SEMANTIC_SIMILARITY": "task: sentence similarity | query: {}",
}

PROMPT = """You tag and caption photos of clothing for a shop's catalogue.
Return the keywords that describe the main garment in the photo, choosing only from these
facets and keywords:
{facets}
Leave a facet's list empty when none of its keywords clearly applies; never guess.
Also write one concise caption sentence naming the garment's color, type, material, style
and audience where they are visible, e.g. "A red cotton summer dress for women."
"""


def _limiter(per_minute: int) -> Limiter:
    # Two windows: the per-minute quota itself, and a per-second share of it so that a
    # run does not spend the whole minute's quota in its first second.
    per_second = max(1, math.ceil(per_minute / 60))
    return Limiter([Rate(per_second, Duration.SECOND), Rate(per_minute, Duration.MINUTE)])


def _retry_after(exc: Any) -> float | None:
    """Seconds the server asked us to wait, from Retry-After or a RetryInfo detail."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    details = getattr(exc, "details", None)
    found = re.search(r'"retryDelay":\s*"([\d.]+)s"', json.dumps(details, default=str))
    return float(found.group(1)) if found else None


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx

    classes: list[type[BaseException]] = [httpx.TimeoutException, httpx.TransportError]
    try:  # the SDK uses the httpx2 fork when it is installed
        import httpx2  # type: ignore[import-not-found]

        classes += [httpx2.TimeoutException, httpx2.TransportError]
    except ImportError:
        pass
    return tuple(classes)


def _translate(exc: Exception) -> ProviderError | None:
    """Our typed error for an SDK or transport exception, or None if it is a bug of ours."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        message = f"HTTP {exc.code} {exc.status or ''}: {exc.message or ''}".strip()
        if exc.code in RETRYABLE_STATUS:
            return TransientProviderError(message, retry_after=_retry_after(exc))
        return ProviderError(message)
    if isinstance(exc, errors.UnknownApiResponseError | json.JSONDecodeError):
        # An HTTP body cut off mid-way is a transport problem: worth another try.
        return TransientProviderError(f"truncated or invalid JSON from the API: {exc}"[:300])
    if isinstance(exc, _transport_errors()):
        kind = "timed out" if "Timeout" in type(exc).__name__ else "failed"
        return TransientProviderError(f"request {kind}: {type(exc).__name__} {exc}".strip())
    return None


class _WaitRetryAfter:
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_exponential_jitter(initial=initial, max=maximum, jitter=initial)
        self._maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        wait = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            wait = max(wait, min(float(asked), max(self._maximum, 1.0)))
        return float(wait)


def _parse_description(response: Any) -> Description:
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and feedback.block_reason:
        reason = getattr(feedback.block_reason, "value", feedback.block_reason)
        raise BlockedResponseError(f"request blocked by the API: {reason}")
    candidates = response.candidates or []
    if not candidates:
        raise MalformedResponseError("the API returned no candidates")
    candidate = candidates[0]
    finish = str(getattr(candidate.finish_reason, "value", candidate.finish_reason) or "")
    if finish in BLOCKING_FINISH:
        raise BlockedResponseError(f"response blocked by the API (finish reason {finish})")
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if getattr(p, "text", None) and not p.thought)
    if not text.strip():
        raise MalformedResponseError(f"the model returned no text (finish reason {finish or '?'})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedResponseError(f"model output is not valid JSON: {exc.msg}") from exc
    return description_from_json(data)


def is_multimodal(model: str) -> bool:
    return model.rsplit("/", 1)[-1].startswith(MULTIMODAL_EMBEDDING_MODELS)


def _unique(words: list[str]) -> list[str]:
    """Keywords without repeats (case-insensitive), first spelling kept: the response schema
    cannot ask the model for unique items."""
    seen: dict[str, str] = {}
    for word in words:
        seen.setdefault(word.strip().casefold(), word.strip())
    return list(seen.values())


def description_from_json(data: Any) -> Description:
    """Validate the structured output's shape; anything else is a malformed response."""
    if not isinstance(data, dict):
        raise MalformedResponseError("model output is not a JSON object")
    keywords, caption = data.get("keywords"), data.get("caption")
    if not isinstance(keywords, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(w, str) for w in v)
        for k, v in keywords.items()
    ):
        raise MalformedResponseError("model output lacks a keywords object of string lists")
    if not isinstance(caption, str) or not caption.strip():
        raise MalformedResponseError("model output lacks a caption")
    return Description({k: _unique(v) for k, v in keywords.items()}, " ".join(caption.split()))


class _FairLimiter:
    """A rate limiter that hands out its slots in the order threads asked for them.

    pyrate-limiter gives a free slot to whichever waiting thread polls first; with two
    batches in flight that interleaves them, so both finish late and the pipeline stalls
    between them. Queuing by ticket keeps requests in submission order: the older batch
    finishes first while the next one is still being described.
    """

    def __init__(self, per_minute: int) -> None:
        self._limiter = _limiter(per_minute)
        self._turn = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def acquire(self) -> None:
        with self._turn:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._turn.wait_for(lambda: self._serving == ticket)
        try:
            self._limiter.try_acquire("request")
        finally:
            with self._turn:
                self._serving += 1
                self._turn.notify_all()


class GeminiProvider(Provider):
    name = "gemini"

    def __init__(
        self,
        settings: Settings,
        client: genai.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._client = client
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._generation_limiter = _FairLimiter(settings.generation_rpm)
        self._embedding_limiter = _FairLimiter(settings.embedding_rpm)
        self._submit = threading.Lock()
        self._usage = Usage()
        self._retrying = Retrying(
            stop=stop_after_attempt(settings.max_attempts),
            wait=_WaitRetryAfter(settings.retry_initial_wait, settings.retry_max_wait),
            retry=retry_if_exception_type(TransientProviderError),
            before_sleep=before_sleep_log(log, logging.INFO),
            sleep=sleep,
            reraise=True,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> GeminiProvider:
        return cls(settings)

    @property
    def embedding_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec(
            self.name, self._settings.embedding_model, self._settings.embedding_dim
        )

    @property
    def image_spec(self) -> EmbeddingSpec | None:
        """A multimodal embedding model puts pictures in the same space as text."""
        return self.embedding_spec if is_multimodal(self._settings.embedding_model) else None

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def model_ids(self) -> dict[str, str]:
        return {
            "generation_model": self._settings.generation_model,
            "embedding_model": self._settings.embedding_model,
        }

    @property
    def client(self) -> genai.Client:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> genai.Client:
        if not self._settings.google_api_key:
            raise ConfigError("GOOGLE_API_KEY (or GEMINI_API_KEY) is not set")
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=self._settings.gemini_base_url,
            timeout=int(self._settings.request_timeout * 1000),
            retry_options=None,  # tenacity owns retries, so they are not doubled
        )
        return genai.Client(api_key=self._settings.google_api_key, http_options=options)

    def _call(self, limiter: _FairLimiter, fn: Callable[[], T]) -> T:
        def attempt() -> T:
            limiter.acquire()
            try:
                return fn()
            except Exception as exc:
                typed = _translate(exc)
                if typed is None:
                    raise
                raise typed from exc

        return self._retrying(attempt)

    # --- description ---

    def describe(
        self, images: Sequence[PreparedImage], vocabulary: Vocabulary
    ) -> list[Description | ProviderError]:
        from google.genai import types

        config = types.GenerateContentConfig(
            system_instruction=PROMPT.format(facets=vocabulary.describe()),
            response_mime_type="application/json",
            response_json_schema=vocabulary.response_schema(),
            thinking_config=types.ThinkingConfig(
                thinking_level=self._settings.thinking_level.upper()  # type: ignore[arg-type]
            ),
        )
        resolution = f"MEDIA_RESOLUTION_{self._settings.media_resolution.upper()}"

        def one(image: PreparedImage) -> Description | ProviderError:
            contents: list[Any] = [
                types.Part.from_bytes(
                    data=image.jpeg,
                    mime_type=image.mime_type,
                    media_resolution=resolution,  # type: ignore[arg-type]
                ),
                "Tag and caption this garment.",
            ]
            try:
                response = self._call(
                    self._generation_limiter,
                    lambda: self.client.models.generate_content(
                        model=self._settings.generation_model, contents=contents, config=config
                    ),
                )
                self._count(response)
                return _parse_description(response)
            except ProviderError as exc:
                return exc

        pool = self._executor()
        with self._submit:  # one batch's requests queue together, in order
            futures = [pool.submit(one, image) for image in images]
        return [f.result() for f in futures]

    def _count(self, response: Any) -> None:
        meta = getattr(response, "usage_metadata", None)
        self._usage.add(
            generation_requests=1,
            prompt_tokens=getattr(meta, "prompt_token_count", 0) or 0,
            output_tokens=getattr(meta, "candidates_token_count", 0) or 0,
            thinking_tokens=getattr(meta, "thoughts_token_count", 0) or 0,
        )

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._settings.concurrency, thread_name_prefix="gemini"
                )
            return self._pool

    # --- embeddings ---

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._embed(texts, "RETRIEVAL_DOCUMENT")

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return self._embed(texts, "RETRIEVAL_QUERY")

    def embed_words(self, words: Sequence[str]) -> list[list[float]]:
        return self._embed(words, "SEMANTIC_SIMILARITY")

    def embed_images(self, images: Sequence[PreparedImage]) -> list[list[float]]:
        """One vector per picture, in the text's space (multimodal embedding models only)."""
        from google.genai import types

        if not is_multimodal(self._settings.embedding_model):
            raise ProviderError(
                f"{self._settings.embedding_model} embeds text only; "
                f"use {MULTIMODAL_EMBEDDING_MODELS[0]} to embed images"
            )
        contents = [
            types.Content(
                role="user",
                parts=[types.Part.from_bytes(data=image.jpeg, mime_type=image.mime_type)],
            )
            for image in images
        ]
        return self._embed_contents(contents, None, MAX_IMAGES_PER_EMBED_REQUEST)

    def _embed(self, texts: Sequence[str], task_type: str) -> list[list[float]]:
        from google.genai import types

        multimodal = is_multimodal(self._settings.embedding_model)
        if multimodal:
            texts = [TASK_PREFIXES[task_type].format(text) for text in texts]
        # One Content per text: a list of strings would be merged into ONE content, and so
        # come back as one vector for all of them.
        contents = [
            types.Content(role="user", parts=[types.Part.from_text(text=text)]) for text in texts
        ]
        return self._embed_contents(contents, None if multimodal else task_type, MAX_EMBED_BATCH)

    def _embed_contents(
        self, contents: list[Any], task_type: str | None, per_request: int
    ) -> list[list[float]]:
        from google.genai import types

        dim = self._settings.embedding_dim
        config = types.EmbedContentConfig(task_type=task_type, output_dimensionality=dim)
        vectors: list[list[float]] = []
        for start in range(0, len(contents), per_request):
            chunk = contents[start : start + per_request]
            response = self._call(
                self._embedding_limiter,
                lambda chunk=chunk: self.client.models.embed_content(
                    model=self._settings.embedding_model, contents=chunk, config=config
                ),
            )
            self._usage.add(embedding_requests=1)
            got = [e.values or [] for e in (response.embeddings or [])]
            if len(got) != len(chunk):
                raise MalformedResponseError(
                    f"asked for {len(chunk)} embeddings, the API returned {len(got)}"
                )
            if any(len(v) != dim for v in got):
                bad = next(len(v) for v in got if len(v) != dim)
                raise MalformedResponseError(f"embedding has {bad} dimensions, expected {dim}")
            vectors.extend(_normalise(got))
        return vectors

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


def _normalise(rows: list[list[float]]) -> list[list[float]]:
    # Gemini embeddings are unit length only at full size; truncated ones are not.
    m = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(norms == 0, 1.0, norms)).tolist()
