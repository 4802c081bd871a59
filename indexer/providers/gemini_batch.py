"""The Gemini provider's batch mode: the same requests as online calls, sent as Batch API
jobs (half the price, answers within 24 hours): descriptions (`batchGenerateContent`, read
back keyed by content id) and embeddings (`asyncBatchEmbedContent`, read back in order). It
uses its provider's request building, retry policy and usage counting, and a client of its
own on v1beta, where the Batch API lives."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from indexer.errors import GoneError, MalformedResponseError, ProviderError
from indexer.providers import gemini_requests
from indexer.providers.base import BatchJobs, BatchStatus
from indexer.providers.gemini_responses import embedding_vectors, parse_description
from indexer.records import Description

if TYPE_CHECKING:
    from google import genai

    from indexer.config import Settings
    from indexer.images import PreparedImage
    from indexer.vocabulary import Vocabulary

T = TypeVar("T")
log = logging.getLogger(__name__)


def _state(job: Any) -> str:
    raw = str(getattr(job.state, "value", job.state) or "")
    return raw.removeprefix("JOB_STATE_").removeprefix("BATCH_STATE_").lower() or "pending"


class OnlineSide(Protocol):
    """What batch jobs take from the provider's online side: the same requests, the same
    retry policy and the same usage counting."""

    @property
    def settings(self) -> Settings: ...

    def make_client(self, api_version: str | None = None) -> genai.Client: ...
    def request_contents(self, image: PreparedImage) -> list[Any]: ...
    def generation_config(self, vocabulary: Vocabulary) -> Any: ...
    def call_plain(
        self, fn: Callable[[], T], idempotent: bool = True, kind: str = "other"
    ) -> T: ...
    def count_usage(self, response: Any) -> None: ...


class GeminiBatchJobs(BatchJobs):
    def __init__(self, provider: OnlineSide) -> None:
        self._provider = provider
        self._client: genai.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> genai.Client:
        """A client on v1beta: the Batch API is not on the stable v1 the SDK defaults to."""
        with self._lock:
            if self._client is None:
                self._client = self._provider.make_client(api_version="v1beta")
            return self._client

    def request(self, image: PreparedImage, vocabulary: Vocabulary) -> Any:
        """The same request `describe` sends, keyed by the image's content id."""
        from google.genai import types

        return types.InlinedRequest(
            model=self._provider.settings.generation_model,
            contents=self._provider.request_contents(image),
            config=self._provider.generation_config(vocabulary),
            metadata={"key": image.id},
        )

    def submit(self, requests: Sequence[Any], display_name: str) -> tuple[str, str]:
        """Create a batch job; return its name and state. Retried only when refused: a create
        that timed out or failed with a 5xx may still have made the job (the API takes no
        idempotency key), so a TransientProviderError that is not `refused` means "look for
        it by its display name"."""
        job = self._provider.call_plain(
            lambda: self.client.batches.create(
                model=self._provider.settings.generation_model,
                src=list(requests),
                config={"display_name": display_name},
            ),
            idempotent=False,
        )
        return str(job.name), _state(job)

    def submit_embeddings(
        self, documents: Sequence[str], pictures: Sequence[PreparedImage], display_name: str
    ) -> tuple[str, str]:
        """An embedding job of inline requests: the documents with the task written in as
        `embed_documents` writes it, then the pictures. One config for all: a multimodal
        model takes no task_type, and a text-only one is sent no pictures."""
        from google.genai import types

        settings = self._provider.settings
        contents = gemini_requests.text_contents(settings, documents, "RETRIEVAL_DOCUMENT")
        contents += gemini_requests.picture_contents(pictures)
        source = types.EmbeddingsBatchJobSource(
            inlined_requests=types.EmbedContentBatch(
                contents=contents,
                config=gemini_requests.embedding_config(settings, "RETRIEVAL_DOCUMENT"),
            )
        )

        def create() -> Any:
            with warnings.catch_warnings():  # the SDK marks it experimental
                warnings.simplefilter("ignore")
                return self.client.batches.create_embeddings(
                    model=settings.embedding_model,
                    src=source,
                    config={"display_name": display_name},
                )

        job = self._provider.call_plain(create, idempotent=False)
        return str(job.name), _state(job)

    def status(self, name: str) -> BatchStatus:
        """A job's state, and each request's answer once the job has succeeded; "missing"
        when the API no longer knows the job."""
        try:
            job = self._provider.call_plain(lambda: self.client.batches.get(name=name))
        except GoneError:
            return BatchStatus(name, "missing")
        state = _state(job)
        answers: dict[str, Description | ProviderError] | None = None
        embedded = job.dest.inlined_embed_content_responses if job.dest else None
        if state == "succeeded" and embedded is not None:
            return self._embedded(name, embedded)
        if state == "succeeded":
            answers = {}
            for item in (job.dest.inlined_responses if job.dest else None) or []:
                key = (item.metadata or {}).get("key", "")
                if item.error is not None:
                    message = getattr(item.error, "message", None) or str(item.error)
                    answers[key] = ProviderError(f"batch request failed: {message}")
                    continue
                self._provider.count_usage(item.response)
                try:
                    answers[key] = parse_description(item.response)
                except ProviderError as exc:
                    answers[key] = exc
        return BatchStatus(name, state, answers)

    def _embedded(self, name: str, items: list[Any]) -> BatchStatus:
        """A succeeded embedding job's vectors, checked as online ones are; "failed" when one
        request failed or any vector is unusable (the job is then sent again, whole)."""
        got: list[list[float]] = []
        for item in items:
            embedding = item.response.embedding if item.response is not None else None
            if item.error is not None or embedding is None or not embedding.values:
                why = getattr(item.error, "message", None) or "no embedding"
                log.warning("batch job %s: request %d failed: %s", name, len(got), why)
                return BatchStatus(name, "failed")
            got.append(list(embedding.values))
        try:
            vectors = embedding_vectors(got, len(got), self._provider.settings.embedding_dim)
        except MalformedResponseError as exc:
            log.warning("batch job %s: %s", name, exc)
            return BatchStatus(name, "failed")
        return BatchStatus(name, "succeeded", vectors=vectors)

    def listing(self) -> list[tuple[str, str, str]]:
        """(name, display name, state) of every batch job of the account."""
        pager = self._provider.call_plain(
            lambda: self.client.batches.list(config={"page_size": 100})
        )
        return [(str(j.name), str(j.display_name or ""), _state(j)) for j in pager]

    def cancel(self, name: str) -> None:
        self._provider.call_plain(lambda: self.client.batches.cancel(name=name))
