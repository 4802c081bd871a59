"""The query client: nearest-neighbour search of the image collection, by text or by image.

    from query import QueryClient
    client = QueryClient.from_env()
    for hit in client.text("colorful dress", where={"season": "summer"}, limit=5):
        print(hit.score, hit.path, hit.caption)

Importing this module loads no model code and opens no store; both happen on first use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from indexer.config import Settings, load_settings
from indexer.errors import ImageError, QueryError, StoreError
from indexer.records import Page, StoredRecord
from indexer.vocabulary import Vocabulary
from query.examples import Examples, one_space, words_of
from query.filters import Where, checked
from query.hits import Hit
from query.listing import Listings
from query.routes import Probe, Routes
from query.searchers import Searchers

if TYPE_CHECKING:
    from indexer.duplicates import Group
    from indexer.enrich import Enricher
    from indexer.providers.base import Provider
    from indexer.store import ImageStore
    from query.planner import Planner

QueryResult = Hit
MAX_RANKED = 500  # a search's deepest page ends here
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Health:
    """`QueryClient.health`: the store answers; what it holds and who built it."""

    records: int
    provider: str
    embedding_model: str
    store: str  # where: a folder, or a server's URL (never a credential)


def _reopening(
    method: Callable[Concatenate[QueryClient, P], R],
) -> Callable[Concatenate[QueryClient, P], R]:
    """On a store error, look whether the collection was replaced (a finished `indexer
    reembed` switches in new collections under the same name); if so, open it anew and
    ask once more, instead of failing every request until a restart."""

    @functools.wraps(method)
    def wrapper(self: QueryClient, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            if not self._reopen_if_replaced():
                raise
            return method(self, *args, **kwargs)

    return wrapper


class QueryClient:
    def __init__(
        self,
        settings: Settings,
        *,
        store: ImageStore | None = None,
        provider: Provider | None = None,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._provider = provider
        self._own_provider = provider is None  # made from the collection's record
        self._vocabulary = vocabulary
        self._enricher: Enricher | None = None
        self._searchers = Searchers(settings)
        self._routes = Routes(self._searchers)
        self._checked = False
        self._listings = Listings(settings.cache_dir / "listings")
        # Guards the lazily built parts only, held for moments: searches run in parallel.
        self._lock = threading.RLock()
        # Held while a slow part is built (an enricher's vocabulary embedded), so that
        # building it keeps nobody else from the built ones.
        self._enricher_lock = threading.Lock()
        self._examples = Examples(settings, self._ready, self._enricher_for)

    @classmethod
    def from_env(cls, **overrides: object) -> QueryClient:
        """A client configured like the CLI: environment, `.env`, then `overrides`."""
        return cls(load_settings(**overrides))

    # --- lazily built parts ---

    @property
    def vocabulary(self) -> Vocabulary:
        with self._lock:
            if self._vocabulary is None:
                self._vocabulary = Vocabulary.load(self.settings.vocabulary_file)
            return self._vocabulary

    def _opened(self) -> ImageStore:
        """The collection, opened for reading (no provider needed)."""
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is None:
                from indexer.store import ImageStore

                self._store = ImageStore.open(self.settings)
            return self._store

    def _ready(self) -> tuple[ImageStore, Provider]:
        """Open the collection and the provider that built it; refuse a mismatch."""
        store, provider = self._store, self._provider
        if self._checked and store is not None and provider is not None:
            return store, provider
        with self._lock:
            store = self._opened()
            if self._provider is None:
                from indexer.wiring import recorded_provider

                self._provider = recorded_provider(store, self.settings)
            if not self._checked:
                # Once per client: the collection's vector space does not change under it.
                store.check(self._provider.embedding_spec)
                self._checked = True
            return store, self._provider

    def _reopen_if_replaced(self) -> bool:
        with self._lock:
            if self._store is None or not self._store.replaced():
                return False
            self._store = None
            self._checked = False
            self._searchers.forget()
            self._enricher = None
            self._listings.forget()
            self._examples.forget()
            if self._own_provider and self._provider is not None:
                self._provider.close()
                self._provider = None
            return True

    @property
    def planner(self) -> Planner:
        """Plans filtered searches over this client's collection."""
        store, _ = self._ready()
        return self._searchers.planner(store)

    def _enricher_for(self, provider: Provider) -> Enricher:
        """Built once per client: it embeds the vocabulary and may load an image model."""

        with self._enricher_lock:
            if self._enricher is None:
                from indexer.wiring import enricher_for

                self._enricher = enricher_for(self.settings, provider)
            return self._enricher

    # --- queries ---

    @_reopening
    def text(
        self,
        text: str,
        where: Where | None = None,
        limit: int = 10,
        offset: int = 0,
        *,
        exclude: Where | None = None,
        min_score: float | None = None,
    ) -> list[QueryResult]:
        """Images best described by `text`: the `limit` best after the first `offset` (a page
        of results), with every keyword of `where` and none of `exclude`, scoring at least
        `min_score` (see docs/usage.md for what a score means).

        With a multimodal embedding model, the text is also compared with the pictures
        themselves, and the two routes are fused by the mean of their cosine similarities
        (`scripts/bench_retrieval.py` compares this with reciprocal rank fusion)."""

        if not text.strip():
            raise QueryError("the query text is empty")

        def probe() -> Probe:
            store, provider = self._ready()
            vector = provider.embed_queries([text])[0]
            return Probe(vector, second=vector if one_space(store, provider) else None)

        return self._answer(probe, where, exclude, limit, offset, min_score)

    @_reopening
    def image(
        self,
        path: str | Path | bytes,
        where: Where | None = None,
        limit: int = 10,
        offset: int = 0,
        *,
        text: str | None = None,
        exclude: Where | None = None,
        min_score: float | None = None,
    ) -> list[QueryResult]:
        """Images most like the one at `path` (or these image bytes, e.g. an upload), the
        `limit` best after the first `offset`, filtered and cut as `QueryClient.text`'s. The
        query image is
        not added to the collection, and asking again for another page of it calls no model.

        With a multimodal embedding model the photo itself is the query, compared with the
        stored pictures (one embedding request). Otherwise it goes through the same recipe
        as an indexed image (described, keywords corrected, "keywords. caption" embedded),
        and an answer ingestion would refuse is refused here too; where the collection also
        holds image vectors of the same image model, the score is the mean of the visual and
        the caption cosine similarity.

        `text` changes the picture by words ("in red"): with a multimodal model the picture
        and the words are embedded as one content; otherwise the photo's candidates are
        re-ranked by how well each record's caption matches the words.
        """
        from indexer.images import SourceImage, read_source

        def probe() -> Probe:
            words = words_of(text)
            name = "uploaded image" if isinstance(path, bytes) else str(path)
            try:
                source = (
                    SourceImage(Path("upload"), path)
                    if isinstance(path, bytes)
                    else read_source(Path(path), self.settings.max_file_bytes)
                )
            except ImageError as exc:
                raise QueryError(f"{name}: {exc}") from exc
            return self._examples.photo(source, words)

        return self._answer(probe, where, exclude, limit, offset, min_score)

    @_reopening
    def similar(
        self,
        ref: str | Path,
        where: Where | None = None,
        limit: int = 10,
        offset: int = 0,
        *,
        text: str | None = None,
        exclude: Where | None = None,
        min_score: float | None = None,
    ) -> list[QueryResult]:
        """More like an indexed image: `ref` is its record's id or its file's path. Ranked from
        the record's stored vectors as `image` ranks a photo, the record itself left out,
        filtered and paged as `image` is; calls no model. With `text`, as `image` with
        `text` does (one embedding request on a multimodal model: the indexed file with the
        words, or, when the file changed since, its stored picture re-ranked by the words)."""
        probe = lambda: self._examples.record(ref, words_of(text))  # noqa: E731
        return self._answer(probe, where, exclude, limit, offset, min_score)

    def _answer(
        self,
        probe: Callable[[], Probe],
        where: Where | None,
        exclude: Where | None,
        limit: int,
        offset: int,
        min_score: float | None,
    ) -> list[Hit]:
        """A page of a search: filters and page checked first (a bad one costs no model
        call), then what `probe` searches by, ranked, cut at `min_score`."""
        filters = checked(self.vocabulary, where, exclude)
        _check_page(limit, offset)
        asked = probe()
        store, _ = self._ready()
        return _page(self._routes.ranked(store, asked, filters, limit + offset), offset, min_score)

    @_reopening
    def browse(
        self,
        where: Where | None = None,
        limit: int = 24,
        offset: int = 0,
        *,
        exclude: Where | None = None,
    ) -> Page:
        """The collection itself, newest first: the records with every keyword of `where` and
        none of `exclude` from `offset`, how many match, and for each keyword how many of
        them have it (what a filter chip would leave). Needs no model."""
        filters = checked(self.vocabulary, where, exclude)
        _check_page(limit, offset, deepest=None)  # browsing pages through everything
        store = self._opened()
        browsed = self._listings.current(store).page(filters, limit, offset)
        return Page(browsed.total, store.by_ids(browsed.ids), browsed.counts)

    @_reopening
    def duplicates(self, kinds: Sequence[str] = ("exact", "near")) -> list[Group]:
        """The catalog's groups of duplicate photos (indexer/duplicates.py): reads only;
        records fingerprinted by `indexer duplicates` or a run since are compared."""
        from indexer.duplicates import find

        return find(self._opened(), kinds)

    def dismiss(self, first: str, second: str) -> None:
        """Record that two images (ids or paths) are not duplicates: takes the writer's hold
        for a moment (StoreBusyError while another process writes the embedded store)."""
        from indexer.duplicates import dismiss
        from indexer.store import ImageStore

        with ImageStore.open(self.settings, exclusive=True) as store:
            dismiss(store, first, second)

    @_reopening
    def untagged(self, where: Where | None) -> list[tuple[str, str]]:
        """(facet, provider) for each facet of `where` that no record of the collection has
        a keyword of, so a caller can say why a filter matches nothing."""
        if not where:
            return []
        store, _ = self._ready()
        return [(f, store.spec.provider) for f in self.planner.untagged(list(where))]

    @_reopening
    def known(self, ids: Sequence[str]) -> set[str]:
        """Those of `ids` that the collection holds."""
        store, _ = self._ready()
        return set(store.known_paths(ids))

    @_reopening
    def health(self) -> Health:
        """What a monitor asks: the store answers, with how many records, built by which
        model. Reads the store only: no model is loaded and no key is needed."""
        store = self._opened()
        return Health(
            records=store.count(),
            provider=store.spec.provider,
            embedding_model=store.spec.model,
            store=self.settings.chroma_location,
        )

    @property
    def concurrency(self) -> int:
        """How many model calls the collection's provider should have in flight at once."""
        _, provider = self._ready()
        return provider.concurrency

    @_reopening
    def record(self, image_id: str) -> StoredRecord | None:
        """The stored record with this id, or None."""
        store, _ = self._ready()
        return store.record(image_id)

    def close(self) -> None:
        self._searchers.close()
        with self._lock:
            if self._provider is not None:
                self._provider.close()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _page(hits: list[Hit], offset: int, min_score: float | None) -> list[Hit]:
    """The hits after the first `offset`, none below `min_score` (hits come best first)."""
    kept = hits if min_score is None else [h for h in hits if h.score >= min_score]
    return kept[offset:]


def _check_page(limit: int, offset: int, deepest: int | None = MAX_RANKED) -> None:
    if limit < 1:
        raise QueryError("limit must be at least 1")
    if offset < 0:
        raise QueryError("offset must be at least 0")
    if deepest is not None and offset + limit > deepest:
        raise QueryError(f"a search ranks at most {deepest} images (offset + limit)")
