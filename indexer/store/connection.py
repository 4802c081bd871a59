"""Opening Chroma, embedded on disk or as a server, and calling it safely.

Every call into Chroma goes through `store_errors`: a server that is away for a while (a
restart, a network blip) is waited out with backoff, and Chroma's own exceptions become
StoreError, so callers handle one error type.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

import tenacity

from indexer.errors import StoreError, one_line

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from indexer.config import Settings

log = logging.getLogger(__name__)

# Records a request names or writes: Chroma Cloud takes at most 300 a write.
ID_CHUNK = 300


class Reachable(Protocol):
    location: str
    retry_seconds: float  # how long to wait out an unreachable server; 0 when embedded


S = TypeVar("S", bound=Reachable)
P = ParamSpec("P")
R = TypeVar("R")


_announced: set[str] = set()  # once per process, however many stores it opens


def connect(settings: Settings, own_engine: bool = False) -> tuple[ClientAPI, str]:
    """A Chroma client (a server when CHROMA_HOST is set, else on disk) and where it is.

    On disk, `own_engine` opens an engine of the client's own on the same folder (close it
    with `disconnect`): chromadb keeps one engine per spelling of the path in a process, and
    an engine loads a collection's vector index once, so only a new one searches what
    another process wrote since."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    # Telemetry off: nothing of a user's catalog leaves the machine unasked.
    chroma_settings = ChromaSettings(
        anonymized_telemetry=False,
        chroma_server_ssl_verify=str(settings.chroma_ca_file) if settings.chroma_ca_file else None,
    )
    notice = settings.store_notice()
    if notice and notice not in _announced:
        _announced.add(notice)
        log.warning("note: %s", notice)

    def server() -> ClientAPI:
        # The token goes in Chroma's own header, as Chroma Cloud and a token-checking
        # proxy in front of `chroma run` both read it.
        token = {"X-Chroma-Token": settings.chroma_token} if settings.chroma_token else {}
        return chromadb.HttpClient(
            host=settings.chroma_host or "",
            port=settings.chroma_port,
            ssl=settings.chroma_ssl,
            headers=token,
            settings=chroma_settings,
            tenant=settings.chroma_tenant,
            database=settings.chroma_database,
        )

    try:
        if settings.uses_server:
            # A server restarting when a worker starts is waited out like one that goes
            # away mid-run.
            client = _patiently(settings.store_retry_seconds, settings.chroma_location)(server)
        else:
            settings.store_path.mkdir(parents=True, exist_ok=True)
            with _instances_lock:
                instance = _take_instance(settings) if own_engine else 0
                client = chromadb.PersistentClient(
                    path=str(settings.store_path) + "/." * instance, settings=chroma_settings
                )
                if instance:
                    _instances[id(client)] = (str(settings.store_path), instance)
    except Exception as exc:  # chromadb raises bare ValueError/ConnectError alike
        untrusted = _certificate_error(exc)
        if untrusted is not None:
            raise StoreError(
                f"cannot open Chroma at {settings.chroma_location}: its certificate is not "
                f"trusted ({untrusted}); set CHROMA_CA_FILE to the authority that signed it"
            ) from exc
        raise StoreError(f"cannot open Chroma at {settings.chroma_location}: {_said(exc)}") from exc
    return client, settings.chroma_location


_instances: dict[int, tuple[str, int]] = {}  # id(client) -> (store folder, k) of open engines
_instances_lock = threading.Lock()


def _take_instance(settings: Settings) -> int:
    """The lowest k > 0 that no open engine of this process on this folder uses: a fresh
    engine, never one another client left open with old indexes loaded. Called holding
    _instances_lock."""
    folder = str(settings.store_path)
    taken = {k for where, k in _instances.values() if where == folder}
    return min(set(range(1, len(taken) + 2)) - taken)


def disconnect(client: ClientAPI) -> None:
    """Close a client: an embedded engine no other client of this process shares stops, and
    the memory of its loaded vector indexes is freed."""
    client.close()
    with _instances_lock:
        _instances.pop(id(client), None)


def _certificate_error(exc: BaseException) -> str | None:
    """What a failed TLS check said, wherever it lies in the chain chromadb wraps it in."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None


def _transient(exc: BaseException) -> bool:
    """A network failure talking to a Chroma server, wherever it lies in the chain chromadb
    wraps it in: worth waiting out (e.g. a restart)."""
    import httpx

    if _certificate_error(exc) is not None:
        return False  # waiting does not make a certificate trusted
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, httpx.TransportError | ConnectionError):
            return True
        # A proxy in front of the server answers for it while it is away.
        if isinstance(seen, httpx.HTTPStatusError) and seen.response.status_code in (
            502,
            503,
            504,
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _patiently(seconds: float, location: str) -> tenacity.Retrying:
    """Retries of a call to a server that may be away, for at most `seconds`."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_transient),
        stop=tenacity.stop_after_delay(seconds),
        wait=tenacity.wait_exponential(multiplier=0.25, max=5.0),
        before_sleep=lambda state: log.warning(
            "Chroma at %s unreachable (%s); retrying", location, _outcome(state)
        ),
        reraise=True,
    )


def store_errors(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Retry a server that is away for a while; report Chroma failures as StoreError.

    Every store call is idempotent (upserts and deletes by content id, reads), so repeating
    one after a dropped connection is safe.
    """

    @functools.wraps(method)
    def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return _patiently(self.retry_seconds, self.location)(method, self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            if _from_chroma(exc):
                raise StoreError(
                    f"Chroma at {self.location}: {method.__name__} failed: {_said(exc)}"
                ) from exc
            raise

    return wrapper


def _from_chroma(exc: Exception) -> bool:
    from chromadb.errors import ChromaError

    return (
        isinstance(exc, ChromaError | ConnectionError | OSError)
        or type(exc).__module__.startswith(("httpx", "chromadb"))
        # What chromadb raises for an answer that is not Chroma's JSON (a proxy's error
        # page); this project never raises a bare Exception.
        or type(exc) is Exception
    )


def _outcome(state: tenacity.RetryCallState) -> str:
    failed = state.outcome.exception() if state.outcome is not None else None
    return _said(failed) if failed is not None else "?"


def _said(exc: BaseException) -> str:
    """The error in one line: a proxy's HTML error page by its title."""
    text = str(exc)
    title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    return one_line(Exception(title.group(1) if title else text))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def chunks(items: Sequence[Any], size: int = ID_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Sibling:
    """A small collection `<name>-<suffix>` kept beside the main one (failure log, usage,
    batch jobs, roots): its entries need no vectors, so each gets a constant one."""

    suffix: str

    def __init__(self, client: ClientAPI, name: str, location: str, retry_seconds: float) -> None:
        self._client = client
        self.collection = name  # the main collection's name
        self.name = f"{name}-{self.suffix}"
        self.location = location
        self.retry_seconds = retry_seconds
        self._opened: Collection | None = None

    @property
    def _log(self) -> Collection:
        if self._opened is None:
            from indexer.store.layout import mark

            self._opened = self._client.get_or_create_collection(
                self.name, metadata=mark(self.collection), embedding_function=None
            )
        return self._opened


def fresh_metadata(client: ClientAPI, name: str) -> dict[str, Any]:
    """A collection's metadata as stored now (a Collection object caches what it was)."""
    return dict(client.get_collection(name, embedding_function=None).metadata or {})


PAGE = 1_000


def pages(collection: Collection, include: list[str], size: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every entry of `collection`, one `get` page at a time, so that memory stays flat on
    any catalog size. Updating the entries of a page read does not shift the next one."""
    offset = 0
    while True:
        got = collection.get(limit=size, offset=offset, include=include)
        yield dict(got)
        if len(got["ids"]) < size:
            return
        offset += size
