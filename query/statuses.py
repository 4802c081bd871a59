"""The HTTP status of each typed error, by what it means for the caller: the one rule the
server answers errors by (the CLIs' rule, exit code 2 for any of them and 3 for a spent
quota, is in console.py)."""

from __future__ import annotations

import math

from indexer.errors import (
    ConfigError,
    EmbeddingMismatchError,
    ImageError,
    IndexerError,
    NoSuchRecordError,
    ProviderError,
    ProviderUnavailableError,
    QueryError,
    QuotaExhaustedError,
    StoreError,
    TransientProviderError,
)

# Seconds a client is asked to wait before trying an overloaded or unreachable part again.
RETRY_AFTER_SECONDS = 5

# First match wins, so a subclass stands before its base.
_RULE: tuple[tuple[type[IndexerError], int], ...] = (
    (NoSuchRecordError, 404),  # "more like" a record that is not there
    (QueryError, 400),  # the request itself is wrong: unknown facet, unreadable upload
    (ImageError, 400),
    (EmbeddingMismatchError, 409),  # the collection was built with another model
    (StoreError, 503),  # unreachable or busy: worth trying again
    (TransientProviderError, 503),  # a quota, a timeout: worth trying again
    (ProviderUnavailableError, 503),  # a quota spent for the day: again once it resets
    (ConfigError, 500),  # no key, a provider not installed: the operator must act
    (ProviderError, 500),
    (IndexerError, 500),
)


def status_of(exc: IndexerError) -> tuple[int, dict[str, str]]:
    """The status for `exc` and the headers that go with it (Retry-After with a 503)."""
    status = next(code for kind, code in _RULE if isinstance(exc, kind))
    if status != 503:
        return status, {}
    wait = RETRY_AFTER_SECONDS
    if isinstance(exc, TransientProviderError) and exc.retry_after:
        wait = max(1, math.ceil(exc.retry_after))
    if isinstance(exc, QuotaExhaustedError) and exc.resets_in:
        wait = max(1, math.ceil(exc.resets_in))
    return status, {"Retry-After": str(wait)}
