"""The Gemini Batch API side of the Gemini provider: the same requests as online calls, sent
as batch jobs (half the price, answers within 24 hours) and read back keyed by content id.

A mixin of `GeminiProvider`, which supplies the request building (`_contents`,
`_generation_config`), the clients, the retry policy (`_call_plain`) and usage counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from indexer.errors import GoneError, ProviderError
from indexer.records import Description

if TYPE_CHECKING:
    from google import genai

    from indexer.images import PreparedImage
    from indexer.vocabulary import Vocabulary


@dataclass(frozen=True)
class BatchStatus:
    name: str
    state: str  # pending, running, succeeded, failed, cancelled, expired, missing (404)
    answers: dict[str, Description | ProviderError] | None = None  # by content id


def _state(job: Any) -> str:
    raw = str(getattr(job.state, "value", job.state) or "")
    return raw.removeprefix("JOB_STATE_").removeprefix("BATCH_STATE_").lower() or "pending"


class GeminiBatches:
    _batch_client: genai.Client | None
    # Supplied by GeminiProvider.
    _settings: Any
    _lock: Any
    _make_client: Any
    _contents: Any
    _generation_config: Any
    _call_plain: Any
    _count: Any
    _parse: Any

    @property
    def batch_client(self) -> genai.Client:
        """A client on v1beta: the Batch API is not on the stable v1 the SDK defaults to."""
        with self._lock:
            if self._batch_client is None:
                self._batch_client = self._make_client(api_version="v1beta")
            return self._batch_client

    def batch_request(self, image: PreparedImage, vocabulary: Vocabulary) -> Any:
        """The same request `describe` sends, keyed by the image's content id."""
        from google.genai import types

        return types.InlinedRequest(
            model=self._settings.generation_model,
            contents=self._contents(image),
            config=self._generation_config(vocabulary),
            metadata={"key": image.id},
        )

    def submit_batch(self, requests: Sequence[Any], display_name: str) -> tuple[str, str]:
        """Create a batch job; return its name and state. Retried only when refused: a create
        that timed out or failed with a 5xx may still have made the job (the API takes no
        idempotency key), so a TransientProviderError that is not `refused` means "look for
        it by its display name"."""
        job = self._call_plain(
            lambda: self.batch_client.batches.create(
                model=self._settings.generation_model,
                src=list(requests),
                config={"display_name": display_name},
            ),
            idempotent=False,
        )
        return str(job.name), _state(job)

    def batch_status(self, name: str) -> BatchStatus:
        """A job's state, and each request's answer once the job has succeeded; "missing"
        when the API no longer knows the job."""
        try:
            job = self._call_plain(lambda: self.batch_client.batches.get(name=name))
        except GoneError:
            return BatchStatus(name, "missing")
        state = _state(job)
        answers: dict[str, Description | ProviderError] | None = None
        if state == "succeeded":
            answers = {}
            for item in (job.dest.inlined_responses if job.dest else None) or []:
                key = (item.metadata or {}).get("key", "")
                if item.error is not None:
                    message = getattr(item.error, "message", None) or str(item.error)
                    answers[key] = ProviderError(f"batch request failed: {message}")
                    continue
                self._count(item.response)
                try:
                    answers[key] = self._parse(item.response)
                except ProviderError as exc:
                    answers[key] = exc
        return BatchStatus(name, state, answers)

    def list_batches(self) -> list[tuple[str, str, str]]:
        """(name, display name, state) of every batch job of the account."""
        pager = self._call_plain(lambda: self.batch_client.batches.list(config={"page_size": 100}))
        return [(str(j.name), str(j.display_name or ""), _state(j)) for j in pager]

    def cancel_batch(self, name: str) -> None:
        self._call_plain(lambda: self.batch_client.batches.cancel(name=name))
