"""Calling the Gemini API within quotas and through faults: a per-minute limiter that serves
threads in arrival order, and the retry policy (429, 5xx, timeouts, dropped connections,
truncated bodies) with exponential backoff and jitter that never waits less than the
server's Retry-After. SDK and transport exceptions become our typed errors here."""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import threading
import time
from typing import Any

from pyrate_limiter import Duration, Limiter, Rate
from tenacity import RetryCallState, wait_exponential_jitter

from indexer.errors import (
    EndpointUnreachableError,
    GoneError,
    ProviderError,
    QuotaExhaustedError,
    TransientProviderError,
)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def limiter(per_minute: int) -> Limiter:
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


def _violations(exc: Any) -> list[dict[str, Any]]:
    """The QuotaFailure violations a 429 names (quotaId, quotaValue, ...)."""
    details = getattr(exc, "details", None)
    error = details.get("error", details) if isinstance(details, dict) else {}
    found: list[dict[str, Any]] = []
    for detail in error.get("details", []) if isinstance(error, dict) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("QuotaFailure"):
            found.extend(v for v in detail.get("violations", []) if isinstance(v, dict))
    return found


def _spent_for_the_day(exc: Any, longest_wait: float) -> QuotaExhaustedError | None:
    """A 429 that waiting within a run does not cure: a per-day quota, or a retry delay
    longer than the run waits (INDEXER_RETRY_MAX_WAIT). None for a per-minute 429."""
    delay = _retry_after(exc)
    violations = _violations(exc)
    daily = [v for v in violations if "PerDay" in str(v.get("quotaId", ""))]
    if not daily and (delay is None or delay <= longest_wait):
        return None
    named = daily[0] if daily else (violations or [{}])[0]
    quota = str(named.get("quotaId", "")) or "a Gemini quota"
    limit = f" (limit {named['quotaValue']})" if named.get("quotaValue") else ""
    if delay is not None:
        at = time.strftime("%H:%M UTC", time.gmtime(time.time() + delay))
        resets = f"it resets in {_duration(delay)} (about {at})"
    else:
        resets = "it resets at the end of the quota's day"
    advice = "run the same command again then"
    if "batch" not in quota.lower():
        advice += (
            ", or now with --batch (batch jobs have quotas of their own and cost half as much)"
        )
    return QuotaExhaustedError(
        f"Gemini quota {quota}{limit} is spent; {resets}. The images not yet described stay "
        f"pending: {advice}",
        resets_in=delay,
    )


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{max(1, rest // 60)} min"


def _transport_errors(kind: str) -> tuple[type[BaseException], ...]:
    """httpx's exception classes named `kind` (and the httpx2 fork's, when installed)."""
    import httpx

    classes: list[type[BaseException]] = [getattr(httpx, kind)]
    try:  # the SDK uses the httpx2 fork when it is installed
        import httpx2

        classes.append(getattr(httpx2, kind))
    except ImportError:
        pass
    return tuple(classes)


def refused(exc: BaseException) -> bool:
    """The connection was refused, or the name does not resolve: no request reached the
    API (a timeout while connecting is not this)."""
    return isinstance(exc, _transport_errors("ConnectError"))


def translate(exc: Exception, longest_wait: float = math.inf) -> ProviderError | None:
    """Our typed error for an SDK or transport exception, or None if it is a bug of ours.
    A 429 whose quota comes back later than `longest_wait` seconds is no retry's matter."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        message = f"HTTP {exc.code} {exc.status or ''}: {exc.message or ''}".strip()
        spent = _spent_for_the_day(exc, longest_wait) if exc.code == 429 else None
        if spent is not None:
            return spent
        if exc.code in RETRYABLE_STATUS:
            return TransientProviderError(
                message,
                retry_after=_retry_after(exc),
                kind=f"HTTP {exc.code} {exc.status or ''}",
                refused=exc.code == 429,
            )
        return GoneError(message) if exc.code == 404 else ProviderError(message)
    if isinstance(exc, errors.UnknownApiResponseError | json.JSONDecodeError):
        # An HTTP body cut off mid-way is a transport problem: worth another try.
        return TransientProviderError(
            f"truncated or invalid JSON from the API: {exc}"[:300], kind="truncated answers"
        )
    if refused(exc):
        return EndpointUnreachableError(f"{exc}".strip() or type(exc).__name__)
    if isinstance(exc, _transport_errors("TimeoutException")):
        return TransientProviderError(
            f"request timed out: {type(exc).__name__} {exc}".strip(), kind="timeouts"
        )
    if isinstance(exc, _transport_errors("TransportError")):
        return TransientProviderError(
            f"request failed: {type(exc).__name__} {exc}".strip(), kind="dropped connections"
        )
    return None


# An unreachable host is tried this many times (a second or two) before the run gives up.
UNREACHABLE_ATTEMPTS = 3


class RetryPolicy:
    """When to give up, and what to tell the user while retrying: one line per kind of
    trouble (HTTP 429, timeouts, ...), not one per request; -v logs every retry."""

    def __init__(self, max_attempts: int, log: logging.Logger) -> None:
        self._max_attempts = max_attempts
        self._log = log
        self._told: set[str] = set()
        self._lock = threading.Lock()

    def stop(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, EndpointUnreachableError):
            return state.attempt_number >= min(UNREACHABLE_ATTEMPTS, self._max_attempts)
        return state.attempt_number >= self._max_attempts

    def before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        kind = getattr(exc, "kind", "errors")
        self._log.info("retrying after %s: %s", kind, exc)
        with self._lock:
            if kind in self._told:
                return
            self._told.add(kind)
        self._log.warning("Gemini: %s; retrying with backoff (said once; -v shows each)", kind)


class WaitRetryAfter:
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_exponential_jitter(initial=initial, max=maximum, jitter=initial)
        self._maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        wait = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, EndpointUnreachableError):
            return min(float(wait), 1.0)  # a refused connection is retried briefly
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            wait = max(wait, min(float(asked), max(self._maximum, 1.0)))
        return float(wait)


class FairLimiter:
    """A rate limiter that hands out its slots in the order threads asked for them.

    pyrate-limiter gives a free slot to whichever waiting thread polls first; with two
    batches in flight that interleaves them, so both finish late and the pipeline stalls
    between them. Queuing by ticket keeps requests in submission order: the older batch
    finishes first while the next one is still being described.
    """

    def __init__(self, per_minute: int) -> None:
        self._limiter = limiter(per_minute)
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
