"""Gemini provider: one structured-output call per image, batched embeddings.

Requests go through a per-minute limiter (the API's quotas are requests per minute) and are
retried by tenacity on 429, 5xx, timeouts and dropped connections, with exponential backoff
and jitter, waiting at least as long as the server's Retry-After asks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying, retry_if_exception, retry_if_exception_type

from indexer.config import GOOGLE_API_HOST
from indexer.errors import (
    ConfigError,
    EndpointUnreachableError,
    ProviderError,
    ProviderUnavailableError,
    TransientProviderError,
)
from indexer.images import PreparedImage
from indexer.providers import gemini_requests
from indexer.providers.base import Provider
from indexer.providers.gemini_batch import GeminiBatchJobs
from indexer.providers.gemini_requests import MULTIMODAL_EMBEDDING_MODELS, is_multimodal
from indexer.providers.gemini_responses import embedding_vectors, parse_description
from indexer.providers.gemini_transport import (
    FairLimiter,
    RetryPolicy,
    WaitRetryAfter,
    refused,
    translate,
)
from indexer.records import Description, EmbeddingSpec, Usage
from indexer.vocabulary import Vocabulary

if TYPE_CHECKING:
    from google import genai

    from indexer.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_EMBED_BATCH = 100  # batchEmbedContents accepts at most 100 requests
# gemini-embedding-2 takes at most six images in one request.
MAX_IMAGES_PER_EMBED_REQUEST = 6


class GeminiProvider(Provider):
    name = "gemini"
    concurrency = 4  # calls wait on the network, not on this machine
    bills_tokens = True

    def __init__(
        self,
        settings: Settings,
        client: genai.Client | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._batch_jobs = GeminiBatchJobs(self)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._generation_limiter = FairLimiter(settings.generation_rpm)
        self._embedding_limiter = FairLimiter(settings.embedding_rpm)
        self._submit = threading.Lock()
        self._usage = Usage()
        # Once no request can succeed (the host unreachable, a quota spent for the day),
        # every other request stops at its next attempt, waking from a backoff to do so.
        # A quota stops its own kind of request (a day's descriptions spent leaves the
        # embeddings of those described going); an unreachable host stops every kind ("").
        self._stopped: dict[str, ProviderUnavailableError] = {}
        self._halt = threading.Event()
        self._free_keywords = False  # the API refused the vocabulary as a schema's enums
        policy = RetryPolicy(settings.max_attempts, log)
        self._retrying = Retrying(
            stop=policy.stop,
            wait=WaitRetryAfter(settings.retry_initial_wait, settings.retry_max_wait),
            retry=retry_if_exception_type(TransientProviderError),
            before_sleep=policy.before_sleep,
            sleep=sleep or self._pause,
            reraise=True,
        )

    def _pause(self, seconds: float) -> None:
        """A backoff's wait, cut short once the provider stopped."""
        self._halt.wait(seconds)

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def batch_jobs(self) -> GeminiBatchJobs:
        return self._batch_jobs

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
    def endpoint(self) -> str:
        return self._settings.gemini_base_url or f"https://{GOOGLE_API_HOST}"

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
                self._client = self.make_client()
            return self._client

    def make_client(self, api_version: str | None = None) -> genai.Client:
        if not self._settings.google_api_key:
            raise ConfigError("GOOGLE_API_KEY (or GEMINI_API_KEY) is not set")
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=self._settings.gemini_base_url,
            api_version=api_version,
            timeout=int(self._settings.request_timeout * 1000),
            retry_options=None,  # tenacity owns retries, so they are not doubled
        )
        return genai.Client(api_key=self._settings.google_api_key, http_options=options)

    def _call(self, limiter: FairLimiter, fn: Callable[[], T]) -> T:
        """A call within a per-minute quota: every attempt that may reach the API, retries
        too, waits its turn (one whose connection was refused used no quota)."""
        was_refused = False
        kind = "generation" if limiter is self._generation_limiter else "embedding"

        def limited() -> T:
            nonlocal was_refused
            if not was_refused:
                limiter.acquire()
                self._check_stopped(kind)  # found while this one waited for its turn
            try:
                return fn()
            except Exception as exc:
                was_refused = refused(exc)
                raise

        return self.call_plain(limited, kind=kind)

    # --- description ---

    def describe(
        self, images: Sequence[PreparedImage], vocabulary: Vocabulary
    ) -> list[Description | ProviderError]:
        def one(image: PreparedImage) -> Description | ProviderError:
            contents = self.request_contents(image)

            def ask(config: Any) -> Description:
                response = self._call(
                    self._generation_limiter,
                    lambda: self.client.models.generate_content(
                        model=self._settings.generation_model, contents=contents, config=config
                    ),
                )
                self.count_usage(response)
                return parse_description(response)

            try:
                return ask(self.generation_config(vocabulary))
            except ProviderError as exc:
                if not self._enums_refused(exc, vocabulary):
                    return exc
            try:  # again with free keywords: the refusal was of the schema, not the photo
                return ask(self.generation_config(vocabulary))
            except ProviderError as exc:
                return exc

        pool = self._executor()
        with self._submit:  # one batch's requests queue together, in order
            futures = [pool.submit(one, image) for image in images]
        answers = [f.result() for f in futures]
        return answers

    def prompt_tokens(self, image: PreparedImage, vocabulary: Vocabulary) -> int:
        """countTokens (free) for the request describing `image`: the Developer API counts
        contents only, so the system instruction goes in as text."""
        from google.genai import types

        config = self.generation_config(vocabulary)
        contents: list[Any] = [types.Part.from_text(text=config.system_instruction)]
        contents += self.request_contents(image)
        counted = self.call_plain(
            lambda: self.client.models.count_tokens(
                model=self._settings.generation_model, contents=contents
            )
        )
        return int(counted.total_tokens or 0)

    def _enums_refused(self, exc: ProviderError, vocabulary: Vocabulary) -> bool:
        """Whether the API refused the response schema's enums as too large ("too many
        states for serving"): from then on this run describes with free keywords, which the
        keyword mapper maps onto the vocabulary. The refusal costs nothing (400, no answer)."""
        if "too many states" not in str(exc):
            return False
        with self._lock:
            said, self._free_keywords = self._free_keywords, True
        if not said:  # requests in flight together may all have been refused: said once
            log.warning(
                "Gemini refused a response schema listing the vocabulary's %d keywords as too "
                "large; describing with free keywords mapped onto the vocabulary instead",
                vocabulary.size,
            )
        return True

    def generation_config(self, vocabulary: Vocabulary) -> Any:
        """The one request configuration, for online calls and batch jobs alike."""
        return gemini_requests.generation_config(self._settings, vocabulary, self._free_keywords)

    def request_contents(self, image: PreparedImage) -> list[Any]:
        return gemini_requests.request_contents(self._settings, image)

    def _check_stopped(self, kind: str) -> None:
        stopped = self._stopped.get("") or self._stopped.get(kind)
        if stopped is not None:
            raise stopped  # another request found that none of its kind can succeed

    def call_plain(self, fn: Callable[[], T], idempotent: bool = True, kind: str = "other") -> T:
        """A call outside the per-minute quotas, retried like every other; one that is not
        `idempotent` only after an error that says the API did not act on it (a 429, a
        refused connection): a timeout or a 5xx may hide its success."""

        def attempt() -> T:
            self._check_stopped(kind)
            try:
                return fn()
            except Exception as exc:
                typed = translate(exc, self._settings.retry_max_wait)
                if typed is None:
                    raise
                if isinstance(typed, EndpointUnreachableError):
                    typed = EndpointUnreachableError(
                        f"cannot reach the Gemini API at {self.endpoint} ({typed}); check "
                        "the network, or GEMINI_BASE_URL"
                    )
                raise typed from exc

        retrying = self._retrying
        if not idempotent:
            retrying = retrying.copy(
                retry=retry_if_exception(
                    lambda e: isinstance(e, TransientProviderError) and e.refused
                )
            )
        try:
            return retrying(attempt)
        except ProviderUnavailableError as exc:
            self._stopped["" if isinstance(exc, EndpointUnreachableError) else kind] = exc
            self._halt.set()
            raise

    def count_usage(self, response: Any) -> None:
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
        if not is_multimodal(self._settings.embedding_model):
            raise ProviderError(
                f"{self._settings.embedding_model} embeds text only; "
                f"use {MULTIMODAL_EMBEDDING_MODELS[0]} to embed images"
            )
        contents = gemini_requests.picture_contents(images)
        return self._embed_contents(contents, None, MAX_IMAGES_PER_EMBED_REQUEST)

    @property
    def composes(self) -> bool:
        return is_multimodal(self._settings.embedding_model)

    def embed_composed(
        self, images: Sequence[PreparedImage], texts: Sequence[str]
    ) -> list[list[float]]:
        if not self.composes:
            return super().embed_composed(images, texts)
        contents = gemini_requests.composed_contents(images, texts)
        return self._embed_contents(contents, None, MAX_IMAGES_PER_EMBED_REQUEST)

    def _embed(self, texts: Sequence[str], task_type: str) -> list[list[float]]:
        contents = gemini_requests.text_contents(self._settings, texts, task_type)
        return self._embed_contents(contents, task_type, MAX_EMBED_BATCH)

    def _embed_contents(
        self, contents: list[Any], task_type: str | None, per_request: int
    ) -> list[list[float]]:
        dim = self._settings.embedding_dim
        config = gemini_requests.embedding_config(self._settings, task_type)
        vectors: list[list[float]] = []
        for start in range(0, len(contents), per_request):
            chunk = contents[start : start + per_request]
            response = self._call(
                self._embedding_limiter,
                partial(
                    self.client.models.embed_content,
                    model=self._settings.embedding_model,
                    contents=chunk,
                    config=config,
                ),
            )
            self._usage.add(embedding_requests=1)
            got = [e.values or [] for e in (response.embeddings or [])]
            vectors.extend(embedding_vectors(got, len(chunk), dim))
        return vectors

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
