"""The model-provider interface: one class per backend, batch methods, capability flags."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from indexer.errors import ProviderError
from indexer.images import PreparedImage
from indexer.records import Description, EmbeddingSpec, Usage
from indexer.vocabulary import Vocabulary

__all__ = ["BatchJobs", "BatchStatus", "Description", "EmbeddingSpec", "Provider"]


@dataclass(frozen=True)
class BatchStatus:
    name: str
    state: str  # pending, running, succeeded, failed, cancelled, expired, missing (404)
    answers: dict[str, Description | ProviderError] | None = None  # by content id
    vectors: list[list[float]] | None = None  # an embedding job's, in the order sent


class BatchJobs(ABC):
    """A provider's batch mode: the requests `describe` and the embedding methods send
    online, sent as jobs that answer later (and cost less). Descriptions are read back keyed
    by content id, vectors in the order sent."""

    @abstractmethod
    def request(self, image: PreparedImage, vocabulary: Vocabulary) -> Any:
        """The request for one image, keyed by its content id."""

    @abstractmethod
    def submit(self, requests: Sequence[Any], display_name: str) -> tuple[str, str]:
        """Create a job; its name and state. A create that may have made the job although it
        failed raises a TransientProviderError that is not `refused`: look for the job by its
        display name before making another."""

    @abstractmethod
    def submit_embeddings(
        self, documents: Sequence[str], pictures: Sequence[PreparedImage], display_name: str
    ) -> tuple[str, str]:
        """Create a job embedding `documents` as `embed_documents` does, then `pictures` as
        `embed_images` does; its name and state, with `submit`'s rule for a failed create."""

    @abstractmethod
    def status(self, name: str) -> BatchStatus:
        """A job's state, with each request's answer (or every vector) once it has succeeded;
        "failed" for an embedding job that succeeded without a usable vector for each."""

    @abstractmethod
    def listing(self) -> list[tuple[str, str, str]]:
        """(name, display name, state) of every job of the account."""

    @abstractmethod
    def cancel(self, name: str) -> None: ...


class Provider(ABC):
    """A backend that can describe images and embed text.

    Batch methods take and return lists in the same order. `describe` reports a failed
    item as a ProviderError in its slot so that one bad image never sinks its batch;
    the embedding methods raise, since a batch of vectors is all-or-nothing.
    """

    name: ClassVar[str]
    # Whether `warm_up` loads models on this machine: seconds of work worth announcing.
    loads_models: ClassVar[bool] = False
    # How many calls one process should have in flight at once: a server admits that many
    # image searches and queues a few more.
    concurrency: ClassVar[int] = 2
    # Whether its calls are billed per token (a remote API): a run's cost can be estimated.
    bills_tokens: ClassVar[bool] = False

    @property
    @abstractmethod
    def embedding_spec(self) -> EmbeddingSpec: ...

    @property
    def image_spec(self) -> EmbeddingSpec | None:
        """The space of `embed_images` vectors, for providers that support it."""
        return None

    @property
    def supports_image_embeddings(self) -> bool:
        """Whether `embed_images` works; where it does not, records get image vectors from
        the local image model when that is installed (see enrich.image_vectors)."""
        return self.image_spec is not None

    @property
    def shared_space(self) -> bool:
        """Whether image and text vectors are comparable (one multimodal model): then an
        image query needs no description, and a text query can search the pictures."""
        return self.image_spec is not None and self.image_spec == self.embedding_spec

    @property
    def composes(self) -> bool:
        """Whether `embed_composed` embeds a picture with words as one vector, in the space of
        its pictures (a picture changed by words: "this, but in red")."""
        return False

    @property
    def batch_jobs(self) -> BatchJobs | None:
        """The provider's batch mode, or None when it has none."""
        return None

    @property
    def usage(self) -> Usage:
        """Tokens and requests billed so far; providers that bill nothing report zeros."""
        return Usage()

    @property
    def model_ids(self) -> dict[str, str]:
        """Model ids recorded with every record this provider makes."""
        return {"embedding_model": self.embedding_spec.model}

    @abstractmethod
    def describe(
        self, images: Sequence[PreparedImage], vocabulary: Vocabulary
    ) -> list[Description | ProviderError]: ...

    @abstractmethod
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    @abstractmethod
    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]: ...

    @abstractmethod
    def embed_words(self, words: Sequence[str]) -> list[list[float]]:
        """Embeddings for comparing single keywords with each other."""

    def embed_images(self, images: Sequence[PreparedImage]) -> list[list[float]]:
        raise ProviderError(f"provider {self.name!r} cannot embed images")

    def embed_composed(
        self, images: Sequence[PreparedImage], texts: Sequence[str]
    ) -> list[list[float]]:
        """One vector per picture and its words, taken together (see `composes`)."""
        raise ProviderError(f"provider {self.name!r} cannot embed a picture with words")

    def prompt_tokens(self, image: PreparedImage, vocabulary: Vocabulary) -> int:
        """Prompt tokens of describing `image`, counted without generating (free)."""
        raise ProviderError(f"provider {self.name!r} counts no tokens")

    def warm_up(self) -> None:  # noqa: B027 - a no-op where there is nothing to load
        """Load models now rather than at the first image; always called before work."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads or connections; the provider is unusable afterwards."""
