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
from indexer.errors import StoreError

if TYPE_CHECKING:
    from indexer.config import Settings
    from indexer.pipeline import Indexer
    from indexer.providers.base import Provider


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


@contextmanager
def indexing(settings: Settings, provider: str | None) -> Iterator[Indexer]:
    """The ingestion worker, wired: provider, enricher, and the store opened for writing in
    the enricher's vector spaces. Closes the provider and releases the store afterwards."""
    from indexer.enrich import Enricher
    from indexer.pipeline import Indexer
    from indexer.store import ImageStore
    from indexer.vocabulary import Vocabulary

    vocabulary = Vocabulary.load(settings.vocabulary_file)
    model = chosen_provider(provider, settings)
    try:
        enricher = Enricher.create(settings, model, vocabulary)
        with ImageStore.open(
            settings, write=True, spec=enricher.spec, image_spec=enricher.image_spec
        ) as store:
            try:
                yield Indexer(settings, enricher, store)
            finally:
                # What the run spent counts even when it was interrupted.
                with contextlib.suppress(StoreError):
                    store.usage.record(uuid.uuid4().hex, model.usage)
    finally:
        model.close()
