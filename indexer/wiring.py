"""The one wiring of the ingestion side: which provider (chosen and announced), and the
enricher and store assembled around it, for every command that indexes or re-embeds.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from indexer.console import (
    err,
    line,
    note,
)
from indexer.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from indexer.config import Settings
    from indexer.enrich import Enricher
    from indexer.pipeline import Indexer
    from indexer.providers.base import Provider
    from indexer.store import ImageStore


def chosen_provider(name: str | None, settings: Settings) -> Provider:
    """The named provider, or Gemini when a key is set and else the offline one (said so)."""
    from indexer import providers

    if name is None:
        name = providers.default_name(settings)
        if name != "gemini":
            err.print(line(f"no GOOGLE_API_KEY set: using the offline {name!r} provider"))
        else:
            err.print(line(f"using Gemini (an API key is set): {settings.generation_model}"))
    if name == "gemini":
        note(settings.endpoint_notice())  # the key and photos go elsewhere than Google
    return providers.create(name, settings)


def recorded_provider(store: ImageStore, settings: Settings) -> Provider:
    """The provider that built `store`'s collection: only its vectors are comparable."""
    from indexer import providers

    recorded = store.spec.provider
    if recorded not in providers.available():
        raise ConfigError(
            f"collection {store.name!r} was built by provider {recorded!r}, which is not "
            f"installed here; installed: {', '.join(sorted(providers.available()))}"
        )
    return providers.create(recorded, settings)


def enricher_for(settings: Settings, model: Provider) -> Enricher:
    """The enricher around `model`, with the configured vocabulary."""
    from indexer.enrich import Enricher
    from indexer.vocabulary import Vocabulary

    return Enricher.create(settings, model, Vocabulary.load(settings.vocabulary_file))


def writing(settings: Settings, model: Provider) -> Indexer:
    """The ingestion worker around `model`: its enricher, and the store opened for writing
    in the enricher's vector spaces (close it with `indexer.store.close()`)."""
    from indexer.pipeline import Indexer
    from indexer.store import ImageStore

    enricher = enricher_for(settings, model)
    store = ImageStore.open(
        settings, write=True, spec=enricher.spec, image_spec=enricher.image_spec
    )
    return Indexer(settings, enricher, store)


@contextmanager
def indexing(settings: Settings, provider: str | None) -> Iterator[Indexer]:
    """The ingestion worker, wired: provider chosen and announced, enricher, and the store
    opened for writing. Closes the provider and releases the store afterwards."""
    model = chosen_provider(provider, settings)
    try:
        worker = writing(settings, model)
        with worker.store as store:
            try:
                yield worker
            finally:
                # What the run spent counts even when it was interrupted.
                with contextlib.suppress(StoreError):
                    store.usage.record(uuid.uuid4().hex, model.usage)
    finally:
        model.close()
