"""Typed errors raised by library code; only the CLIs turn them into messages and exit codes."""


class IndexerError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(IndexerError):
    """Settings or vocabulary are missing or invalid."""


class ImageError(IndexerError):
    """A file could not be read or decoded as an image."""


class ProviderError(IndexerError):
    """A model call failed for good (after retries, or not retryable)."""


class GoneError(ProviderError):
    """The API no longer knows what was asked for (HTTP 404: a batch job deleted, past its
    retention, or another project's)."""


class ProviderUnavailableError(ProviderError):
    """No image can succeed now (the API's host unreachable, a quota spent for the day): the
    run stops, writes what it has, and leaves the rest pending, none recorded as failed."""


class QuotaExhaustedError(ProviderUnavailableError):
    """A quota that does not come back within a run's patience (a per-day quota, or a retry
    delay longer than INDEXER_RETRY_MAX_WAIT) is spent."""

    def __init__(self, message: str, resets_in: float | None = None) -> None:
        super().__init__(message)
        self.resets_in = resets_in  # seconds until the API said to try again, if it said


class BudgetReachedError(QuotaExhaustedError):
    """The run's spending cap (`indexer run --max-cost`) leaves no room for another image."""


class TransientProviderError(ProviderError):
    """A model call failed in a way worth retrying (429, 5xx, timeout, connection)."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        kind: str = "error",
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind  # "HTTP 429", "timeout", ...: what a user is told once per run
        # The API did not act on the request (a quota's 429, a refused connection), as
        # opposed to a timeout or a 5xx, after which it may have.
        self.refused = refused


class EndpointUnreachableError(TransientProviderError, ProviderUnavailableError):
    """The API's host refused the connection or does not resolve: no image can succeed, so
    the run stops instead of failing every image after its retries."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="unreachable", refused=True)


class BlockedResponseError(ProviderError):
    """The model refused to answer (safety or other block)."""


class MalformedResponseError(ProviderError):
    """The model answered, but not in the promised shape."""


class StoreError(IndexerError):
    """The vector store could not be reached or refused an operation."""


class NoCollectionError(StoreError):
    """The configured collection does not exist (nothing indexed yet)."""


class StoreBusyError(StoreError):
    """Another process holds the embedded store's writer lock."""


class EmbeddingMismatchError(StoreError):
    """The collection was built with another embedding model or dimension."""


class QueryError(IndexerError):
    """A query is invalid (unknown facet or keyword, unreadable image, ...)."""


class NoSuchRecordError(QueryError):
    """A query names a record the collection does not hold."""


def one_line(exc: BaseException) -> str:
    """An error's message on one line, as logs, failure entries and HTTP answers show it."""
    return " ".join(str(exc).split()) or type(exc).__name__
