"""What an example searches by: a photo (a file or an upload) or an indexed record, with or
without words that change it ("in red"), as a Probe (query/routes.py).

A photo is searched by as an indexed image would be found: in one multimodal space by its
picture vector (one embedding request, no description); otherwise through the ingestion
recipe (described, keywords corrected, "keywords. caption" embedded), with its picture vector
where the collection holds pictures of that image model. An indexed record is searched by its
stored vectors, and calls no model. Words are embedded with the picture as one content where
the provider composes; elsewhere they re-rank the results by their captions. The probes of
the last few photos are kept, so that paging through one photo's results pays for it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.errors import ImageError, NoSuchRecordError, QueryError
from indexer.files import absolute
from indexer.records import Failure, StoredRecord
from query.routes import Probe

if TYPE_CHECKING:
    from indexer.config import Settings
    from indexer.enrich import Enricher
    from indexer.images import PreparedImage, SourceImage
    from indexer.providers.base import Provider
    from indexer.store import ImageStore

ASKED_IMAGES = 32  # query images whose probes are kept for their next page
Ready = Callable[[], "tuple[ImageStore, Provider]"]


def one_space(store: ImageStore, provider: Provider) -> bool:
    """Whether text, photos and the stored pictures share one space (a multimodal model)."""
    return provider.shared_space and store.image_spec == provider.image_spec


def words_of(text: str | None) -> str | None:
    """Words that change a picture ("in red"), or None for none."""
    if text is None:
        return None
    if not text.strip():
        raise QueryError("the words to change the picture by are empty")
    return text.strip()


class Examples:
    def __init__(
        self, settings: Settings, ready: Ready, enricher: Callable[[Provider], Enricher]
    ) -> None:
        self._settings = settings
        self._ready = ready
        self._enricher = enricher
        self._lock = threading.Lock()
        self._asked: OrderedDict[tuple[str, str], Probe] = OrderedDict()

    def forget(self) -> None:
        with self._lock:
            self._asked.clear()

    def photo(self, source: SourceImage, words: str | None) -> Probe:
        """The probe of a photo, changed by `words`."""
        key = (source.id, words or "")
        with self._lock:
            known = self._asked.get(key)
            if known is not None:
                self._asked.move_to_end(key)
                return known
        found = self._photo(source, words)
        with self._lock:
            self._asked[key] = found
            while len(self._asked) > ASKED_IMAGES:
                self._asked.popitem(last=False)
        return found

    def _photo(self, source: SourceImage, words: str | None) -> Probe:
        store, provider = self._ready()
        image = self._prepared(source)
        if one_space(store, provider):
            if words is not None and provider.composes:
                return Probe(provider.embed_composed([image], [words])[0], pictures=True)
            picture = provider.embed_images([image])[0]
            return Probe(picture, pictures=True, words=self._said(provider, words))
        enricher = self._enricher(provider)
        outcome = enricher.enrich([image])[0]
        if isinstance(outcome, Failure):
            name = "uploaded image" if source.path == Path("upload") else str(source.path)
            raise QueryError(f"cannot search by {name}: {outcome.reason}")
        pictured = store.image_spec == enricher.image_spec
        second = outcome.image_embedding if pictured else None
        return Probe(outcome.embedding, second=second, words=self._said(provider, words))

    def record(self, ref: str | Path, words: str | None) -> Probe:
        """The probe of an indexed record, by id or by its file's path, itself left out."""
        store, provider = self._ready()
        record = self._referred(store, ref)
        picture, caption = record.image_embedding, record.embedding
        assert caption is not None, "a record read with its vectors has its caption vector"
        if one_space(store, provider) and picture is not None:
            if words is not None and provider.composes:
                image = self._indexed_file(record)
                if image is not None:  # else: its stored picture, re-ranked by the words
                    vector = provider.embed_composed([image], [words])[0]
                    return Probe(vector, pictures=True, skip=record.id)
            return Probe(picture, True, words=self._said(provider, words), skip=record.id)
        second = picture if store.image_spec is not None else None
        return Probe(caption, second=second, words=self._said(provider, words), skip=record.id)

    @staticmethod
    def _said(provider: Provider, words: str | None) -> list[float] | None:
        return None if words is None else provider.embed_queries([words])[0]

    def _prepared(self, source: SourceImage) -> PreparedImage:
        from indexer.images import prepare

        try:
            return prepare(source, self._settings.image_max_side)
        except ImageError as exc:
            raise QueryError(f"{source.path}: {exc}") from exc

    @staticmethod
    def _referred(store: ImageStore, ref: str | Path) -> StoredRecord:
        """The record `ref` names, by id or by the path of its file, with its vectors."""
        text = str(ref)
        image_id: str | None = text.lower() if _is_id(text) else None
        if image_id is None:
            recorded = store.stats_at([str(absolute(Path(text).expanduser()))])
            image_id = next(iter(recorded.values()))[0] if recorded else None
        found = store.with_vectors([image_id]) if image_id else []
        if not found:
            raise NoSuchRecordError(f"{text}: no such record; give an indexed image's id or path")
        return found[0]

    def _indexed_file(self, record: StoredRecord) -> PreparedImage | None:
        """The record's file, prepared, if it still holds the bytes that were indexed."""
        from indexer.images import reread

        settings = self._settings
        return reread(
            Path(record.path), record.id, settings.image_max_side, settings.max_file_bytes
        )


def _is_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text)
