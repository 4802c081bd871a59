"""The vector store: the only module that talks to Chroma.

One collection holds a record per image (id = content hash): the caption as the document,
the "keywords. caption" embedding, and metadata with the path, each facet's keywords as a
filterable list (`kw_<facet>`), the raw model keywords for audit, model ids and time.
A sibling collection `<name>-failures` remembers images that could not be indexed, so that
every worker and every later run knows about them; `<name>-images` holds each picture's own
vector where an image model gives one. The main collection records which
embedding model built it; opening it with another one is refused.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import tenacity

from indexer.errors import EmbeddingMismatchError, StoreBusyError, StoreError
from indexer.providers.base import EmbeddingSpec
from indexer.vocabulary import Keywords

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from indexer.config import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FACET_PREFIX = "kw_"
# Chroma's `get` and `delete` take id lists; keep each request comfortably small.
_ID_CHUNK = 500


@dataclass(frozen=True)
class ImageRecord:
    id: str
    path: str
    caption: str
    keywords: Keywords
    raw_keywords: Keywords
    embedding: list[float]
    model_ids: Mapping[str, str]
    vocabulary: str
    corrections: Mapping[str, str] = field(default_factory=dict)
    image_embedding: list[float] | None = None  # the picture's own vector, where a model gives one


@dataclass(frozen=True)
class StoredRecord:
    """A record as read back: what `ImageRecord` wrote, vectors only when asked for."""

    id: str
    path: str
    caption: str
    keywords: Keywords
    metadata: Mapping[str, Any]
    embedding: list[float] | None = None
    image_embedding: list[float] | None = None


@dataclass(frozen=True)
class Failure:
    id: str
    path: str
    reason: str
    at: str = ""


@dataclass(frozen=True)
class Hit:
    id: str
    path: str
    score: float  # cosine similarity, higher is better
    keywords: Keywords
    caption: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "score": self.score,
            "keywords": self.keywords,
            "caption": self.caption,
        }


P = ParamSpec("P")
R = TypeVar("R")


def _transient(exc: BaseException) -> bool:
    """A network failure talking to a Chroma server: worth waiting out (e.g. a restart)."""
    import httpx

    return isinstance(exc, httpx.TransportError | ConnectionError)


def _store_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Retry a server that is away for a while; report Chroma failures as StoreError.

    Every store call is idempotent (upserts and deletes by content id, reads), so repeating
    one after a dropped connection is safe.
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, ImageStore)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient),
            stop=tenacity.stop_after_delay(store.retry_seconds),
            wait=tenacity.wait_exponential(multiplier=0.25, max=5.0),
            before_sleep=lambda state: log.warning(
                "Chroma at %s unreachable (%s); retrying",
                store.location,
                state.outcome.exception() if state.outcome else "?",
            ),
            reraise=True,
        )
        try:
            return retrying(method, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            from chromadb.errors import ChromaError

            if isinstance(exc, ChromaError | ConnectionError | OSError) or type(
                exc
            ).__module__.startswith(("httpx", "chromadb")):
                raise StoreError(f"Chroma {method.__name__} failed: {exc}") from exc
            raise

    return wrapper


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _chunks(items: Sequence[Any], size: int = _ID_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def where_clause(filters: Mapping[str, Sequence[str]]) -> dict[str, Any] | None:
    """Chroma filter for "each facet contains each of its keywords", ANDed."""
    terms = [
        {f"{FACET_PREFIX}{facet}": {"$contains": keyword}}
        for facet, keywords in filters.items()
        for keyword in keywords
    ]
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"$and": terms}


class ImageStore:
    def __init__(
        self, client: ClientAPI, name: str, location: str, retry_seconds: float = 0.0
    ) -> None:
        self._client = client
        self.name = name
        self.location = location
        self.retry_seconds = retry_seconds  # how long to wait out an unreachable server
        self._records: Collection | None = None
        self._visual: Collection | None = None  # "<name>-images": one image vector per record
        self._failures: Collection | None = None
        self._writer_lock: Any = None  # filelock.FileLock held while writing an embedded store

    @classmethod
    def open(cls, settings: Settings) -> ImageStore:
        """Embedded Chroma on disk, or a Chroma server when CHROMA_HOST is set."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        # Telemetry off: nothing of a user's catalog leaves the machine unasked.
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if settings.uses_server:
                location = f"http://{settings.chroma_host}:{settings.chroma_port}"
                client = chromadb.HttpClient(
                    host=settings.chroma_host or "",
                    port=settings.chroma_port,
                    settings=chroma_settings,
                )
            else:
                location = str(settings.store_path)
                settings.store_path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(
                    path=str(settings.store_path), settings=chroma_settings
                )
        except Exception as exc:  # chromadb raises bare ValueError/ConnectError alike
            raise StoreError(
                f"cannot open Chroma at {settings.chroma_host or settings.store_path}: {exc}"
            ) from exc
        retry = settings.store_retry_seconds if settings.uses_server else 0.0
        store = cls(client, settings.collection, location, retry)
        if not settings.uses_server:
            store._lock_path = settings.store_path / "writer.lock"
        return store

    _lock_path: Path | None = None

    def _lock_for_writing(self) -> None:
        """One writer per embedded store: two processes would each index everything.

        A Chroma server serialises writers itself, so shard workers share one instead."""
        if self._lock_path is None or self._writer_lock is not None:
            return
        from filelock import FileLock, Timeout

        lock = FileLock(self._lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise StoreBusyError(
                f"the store at {self.location} is busy: another indexer process is writing "
                "to it; wait for it to finish, or run several workers against a Chroma "
                "server (chroma run --path DIR, then CHROMA_HOST=... indexer run --shard K/N)"
            ) from None
        self._writer_lock = lock

    def close(self) -> None:
        """Release the writer lock; reading still works."""
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- collections ---

    def _spec_metadata(self, spec: EmbeddingSpec) -> dict[str, Any]:
        return {
            "embedding_provider": spec.provider,
            "embedding_model": spec.model,
            "embedding_dim": spec.dim,
            "schema_version": SCHEMA_VERSION,
            "created_at": _now(),
        }

    def _check(self, collection: Collection, spec: EmbeddingSpec) -> None:
        meta = collection.metadata or {}
        version = int(meta.get("schema_version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"collection {self.name!r} was written by a newer version of this tool "
                f"(schema {version}, this one reads {SCHEMA_VERSION}); upgrade it"
            )
        recorded = _spec_of(meta)
        if recorded != spec:
            raise EmbeddingMismatchError(
                f"collection {self.name!r} was built with {recorded}, but {spec} is configured; "
                "use the same embedding model or another collection (CHROMA_COLLECTION)"
            )

    def prepare_for_writing(
        self, spec: EmbeddingSpec, image_spec: EmbeddingSpec | None = None
    ) -> None:
        """Create the collections if needed; refuse a collection of another vector space."""
        self._lock_for_writing()
        try:
            self._records = self._client.get_or_create_collection(
                self.name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=self._spec_metadata(spec),
                embedding_function=None,
            )
            if image_spec is not None:
                self._visual = self._client.get_or_create_collection(
                    f"{self.name}-images",
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata=self._spec_metadata(image_spec),
                    embedding_function=None,
                )
        except Exception as exc:
            raise StoreError(f"cannot create collection {self.name!r}: {exc}") from exc
        self._check(self._records, spec)
        if self._visual is not None and image_spec is not None:
            self._check(self._visual, image_spec)

    def prepare_for_reading(self, spec: EmbeddingSpec | None) -> None:
        """Open an existing collection; with `spec`, refuse another vector space."""
        from chromadb.errors import NotFoundError

        try:
            self._records = self._client.get_collection(self.name, embedding_function=None)
        except NotFoundError as exc:
            raise StoreError(
                f"no collection {self.name!r} in {self.location}; index images first "
                "with `indexer run PATH`"
            ) from exc
        except Exception as exc:
            raise StoreError(f"cannot open collection {self.name!r}: {exc}") from exc
        if spec is not None:
            self._check(self._records, spec)
        try:
            self._visual = self._client.get_collection(
                f"{self.name}-images", embedding_function=None
            )
        except Exception:  # no image vectors: image queries use the caption route alone
            self._visual = None

    @property
    def image_spec(self) -> EmbeddingSpec | None:
        return _spec_of(self._visual.metadata or {}) if self._visual is not None else None

    def check(self, spec: EmbeddingSpec) -> None:
        """Refuse an opened collection built in another vector space."""
        self._check(self._collection, spec)

    def recorded_spec(self) -> EmbeddingSpec:
        return _spec_of(self._collection.metadata or {})

    @property
    def _collection(self) -> Collection:
        if self._records is None:
            raise StoreError("store used before prepare_for_writing/prepare_for_reading")
        return self._records

    @property
    def _failure_log(self) -> Collection:
        if self._failures is None:
            try:
                self._failures = self._client.get_or_create_collection(
                    f"{self.name}-failures", embedding_function=None
                )
            except Exception as exc:
                raise StoreError(f"cannot open the failure log: {exc}") from exc
        return self._failures

    # --- records ---

    @_store_errors
    def known_paths(self, ids: Sequence[str]) -> dict[str, str]:
        """Path of each id that is already indexed."""
        found: dict[str, str] = {}
        for chunk in _chunks(list(ids)):
            got = self._collection.get(ids=list(chunk), include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = str((meta or {}).get("path", ""))
        return found

    @_store_errors
    def indexed_paths(self, paths: Sequence[str]) -> set[str]:
        """Those of `paths` that some record points at."""
        return set(self._records_at(paths).values())

    @_store_errors
    def remember_roots(self, roots: Sequence[str]) -> None:
        """Note the folders a run was given, so that `status` can count what is pending."""
        # Read afresh: another worker may have added its roots since this one opened it.
        meta = dict(self._client.get_collection(self.name, embedding_function=None).metadata or {})
        known = _roots_of(meta)
        merged = sorted(set(known) | set(roots))
        if merged != known:
            # modify() replaces the whole metadata, so the recorded spec is written back too.
            self._collection.modify(metadata={**meta, "roots_json": json.dumps(merged)})

    def roots(self) -> list[str]:
        return _roots_of(self._collection.metadata or {})

    @_store_errors
    def update_paths(self, paths: Mapping[str, str]) -> None:
        if paths:
            ids = list(paths)
            self._collection.update(ids=ids, metadatas=[{"path": paths[i]} for i in ids])

    @_store_errors
    def upsert(self, records: Sequence[ImageRecord]) -> None:
        """Write complete records, vectors and metadata together, in one call."""
        if not records:
            return
        pictured = [r for r in records if r.image_embedding is not None]
        if pictured and self._visual is not None:
            # Image vectors first: the main record is what marks an image as indexed, so a
            # crash in between leaves it pending (and redone), never half-indexed.
            self._visual.upsert(
                ids=[r.id for r in pictured],
                embeddings=[r.image_embedding for r in pictured],  # type: ignore[misc]
                metadatas=[self._filter_metadata(r) for r in pictured],  # type: ignore[misc]
            )
        self._collection.upsert(
            ids=[r.id for r in records],
            embeddings=[r.embedding for r in records],  # type: ignore[arg-type]
            documents=[r.caption for r in records],
            metadatas=[self._metadata(r) for r in records],  # type: ignore[misc]
        )
        # A path shows one image: a record of what the file held before it was edited goes.
        written = {r.id for r in records}
        self._delete([i for i in self._records_at([r.path for r in records]) if i not in written])

    def _records_at(self, paths: Sequence[str]) -> dict[str, str]:
        """id -> path of the records at any of `paths`."""
        found: dict[str, str] = {}
        for chunk in _chunks(list(paths)):
            got = self._collection.get(where={"path": {"$in": list(chunk)}}, include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                found[rid] = str((meta or {}).get("path", ""))
        return found

    def _delete(self, ids: Sequence[str]) -> None:
        for chunk in _chunks(list(ids)):
            self._collection.delete(ids=list(chunk))
            if self._visual is not None:
                self._visual.delete(ids=list(chunk))

    @_store_errors
    def remove_paths(self, paths: Sequence[str]) -> int:
        """Forget the images at these paths (their files are gone); return how many."""
        ids = list(self._records_at(paths))
        self._delete(ids)
        self.clear_failures((), paths)
        return len(ids)

    @staticmethod
    def _metadata(record: ImageRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "path": record.path,
            "keywords_json": json.dumps(record.keywords),
            "raw_keywords_json": json.dumps(record.raw_keywords),
            "corrections_json": json.dumps(dict(record.corrections)),
            "indexed_at": _now(),
            **record.model_ids,
        }
        return {**meta, **ImageStore._filter_metadata(record)}

    @staticmethod
    def _filter_metadata(record: ImageRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {"vocabulary": record.vocabulary}
        for facet, words in record.keywords.items():
            if words:  # Chroma refuses empty lists; a missing key filters the same way
                meta[f"{FACET_PREFIX}{facet}"] = list(words)
        return meta

    def records(self, vectors: bool = False, page: int = 500) -> Iterator[StoredRecord]:
        """Every record, a page at a time, so that memory stays flat on any catalog size."""
        offset = 0
        while True:
            rows = self._page(offset, page, vectors)
            yield from rows
            if len(rows) < page:
                return
            offset += page

    @_store_errors
    def _page(self, offset: int, limit: int, vectors: bool) -> list[StoredRecord]:
        include = ["metadatas", "documents", *(["embeddings"] if vectors else [])]
        got = self._collection.get(limit=limit, offset=offset, include=include)  # type: ignore[arg-type]
        ids = list(got["ids"])
        pictures: dict[str, list[float]] = {}
        if vectors and self._visual is not None and ids:
            visual = self._visual.get(ids=ids, include=["embeddings"])
            pictures = {
                rid: [float(x) for x in vec]
                for rid, vec in zip(visual["ids"], visual["embeddings"], strict=True)  # type: ignore[arg-type]
            }
        embeddings = got["embeddings"] if vectors else None
        return [
            _stored(
                rid,
                meta,
                doc,
                embeddings[i] if embeddings is not None else None,
                pictures.get(rid),
            )
            for i, (rid, meta, doc) in enumerate(
                zip(ids, got["metadatas"] or [], got["documents"] or [], strict=True)
            )
        ]

    @_store_errors
    def record(self, image_id: str) -> StoredRecord | None:
        got = self._collection.get(ids=[image_id], include=["metadatas", "documents"])
        if not got["ids"]:
            return None
        return _stored(image_id, (got["metadatas"] or [{}])[0], (got["documents"] or [""])[0])

    @_store_errors
    def count(self) -> int:
        return self._collection.count()

    @_store_errors
    def query(
        self, embedding: Sequence[float], where: Mapping[str, Sequence[str]], limit: int
    ) -> list[Hit]:
        result = self._collection.query(
            query_embeddings=[list(embedding)],
            n_results=max(1, limit),
            where=where_clause(where),  # type: ignore[arg-type]
            include=["metadatas", "documents", "distances"],
        )
        ids = result["ids"][0]
        metas = (result["metadatas"] or [[]])[0]
        docs = (result["documents"] or [[]])[0]
        dists = (result["distances"] or [[]])[0]
        return [
            _hit(rid, m, doc, 1.0 - float(d))
            for rid, m, doc, d in zip(ids, metas, docs, dists, strict=True)
        ]

    @_store_errors
    def query_fused(
        self,
        image_vector: Sequence[float],
        text_vector: Sequence[float],
        where: Mapping[str, Sequence[str]],
        limit: int,
        image_weight: float = 0.5,
    ) -> list[Hit]:
        """Rank by a weighted mean of image-vector and caption-vector cosine similarity.

        Candidates are the nearest of each route; both similarities are then computed
        exactly for every candidate, so an image found by one route is scored by both.
        """
        if self._visual is None:
            return self.query(text_vector, where, limit)
        k = max(4 * limit, 40)
        clause = where_clause(where)
        ids: dict[str, None] = {}
        for collection, vector in ((self._visual, image_vector), (self._collection, text_vector)):
            found = collection.query(
                query_embeddings=[list(vector)],
                n_results=k,
                where=clause,
                include=[],  # type: ignore[arg-type]
            )
            ids.update(dict.fromkeys(found["ids"][0]))
        if not ids:
            return []
        main = self._collection.get(ids=list(ids), include=["embeddings", "metadatas", "documents"])
        visual = self._visual.get(ids=list(ids), include=["embeddings"])
        image_vecs = dict(zip(visual["ids"], visual["embeddings"], strict=True))  # type: ignore[arg-type]
        hits = []
        for rid, emb, meta, doc in zip(
            main["ids"],
            main["embeddings"],
            main["metadatas"],
            main["documents"],
            strict=True,  # type: ignore[arg-type]
        ):
            caption_score = _cosine(emb, text_vector)
            if rid in image_vecs:
                image_score = _cosine(image_vecs[rid], image_vector)
                score = image_weight * image_score + (1 - image_weight) * caption_score
            else:
                score = caption_score
            hits.append(_hit(rid, meta, doc, score))
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:limit]

    # --- failures ---

    @_store_errors
    def record_failures(self, failures: Sequence[Failure]) -> None:
        if not failures:
            return
        # The failure log needs no vectors; Chroma wants one, so each gets a constant.
        self._failure_log.upsert(
            ids=[f.id for f in failures],
            embeddings=[[1.0] for _ in failures],
            documents=[f.reason for f in failures],
            metadatas=[{"path": f.path, "at": f.at or _now()} for f in failures],
        )

    @_store_errors
    def clear_failures(self, ids: Sequence[str], paths: Sequence[str] = ()) -> None:
        """Forget failures of these ids, and older failures at these paths."""
        log_ = self._failure_log
        for chunk in _chunks(list(ids)):
            log_.delete(ids=list(chunk))
        for chunk in _chunks(list(paths)):
            log_.delete(where={"path": {"$in": list(chunk)}})

    @_store_errors
    def failures(self) -> list[Failure]:
        got = self._failure_log.get(include=["metadatas", "documents"])
        out = [
            Failure(rid, str((m or {}).get("path", "")), doc or "", str((m or {}).get("at", "")))
            for rid, m, doc in zip(
                got["ids"], got["metadatas"] or [], got["documents"] or [], strict=True
            )
        ]
        return sorted(out, key=lambda f: f.path)


def _roots_of(meta: Mapping[str, Any]) -> list[str]:
    return list(json.loads(str(meta.get("roots_json", "[]"))))


def _stored(
    rid: str,
    meta: Mapping[str, Any] | None,
    document: str | None,
    embedding: Sequence[float] | None = None,
    image_embedding: list[float] | None = None,
) -> StoredRecord:
    meta = meta or {}
    return StoredRecord(
        id=rid,
        path=str(meta.get("path", "")),
        caption=document or "",
        keywords=_keywords(meta),
        metadata=dict(meta),
        embedding=[float(x) for x in embedding] if embedding is not None else None,
        image_embedding=image_embedding,
    )


def _hit(rid: str, meta: Mapping[str, Any], document: str | None, score: float) -> Hit:
    return Hit(rid, str(meta.get("path", "")), round(score, 6), _keywords(meta), document or "")


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y)) or 1.0
    return float(x @ y) / denominator


def _spec_of(meta: Mapping[str, Any]) -> EmbeddingSpec:
    return EmbeddingSpec(
        str(meta.get("embedding_provider", "?")),
        str(meta.get("embedding_model", "?")),
        int(meta.get("embedding_dim", 0)),
    )


def _keywords(meta: Mapping[str, Any]) -> Keywords:
    raw = meta.get("keywords_json")
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
            if isinstance(data, dict):
                return {k: list(v) for k, v in data.items()}
        except ValueError:
            log.warning("record has unreadable keywords_json; using filter keys")
    return {
        k[len(FACET_PREFIX) :]: list(v)
        for k, v in meta.items()
        if k.startswith(FACET_PREFIX) and isinstance(v, list)
    }
