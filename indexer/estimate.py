"""What a run will cost before it is paid for: `indexer run --dry-run`.

The images counted are the ones the run would describe (new and changed files, failed ones
again, none an open batch job carries), found as the run finds them but with nothing written.
Prompt tokens come from the API's free `countTokens` for one real request (an image's tokens
depend on the media resolution, not on the image); output and thinking tokens from this
collection's own past runs, or, before its first, from a rough guess per thinking level.
Embedding tokens are a small share of the cost and are estimated from the caption's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.prices import Prices, description_tokens

if TYPE_CHECKING:
    from indexer.config import Settings
    from indexer.providers.base import Provider
    from indexer.store import ImageStore
    from indexer.vocabulary import Vocabulary


@dataclass(frozen=True)
class Estimate:
    images: int
    unreadable: int  # files the run would record as failed without a model call
    generation_requests: int
    embedding_requests: int
    prompt_tokens: int
    output_tokens: int
    thinking_tokens: int
    online_usd: float | None  # None: a model the price table lacks
    batch_usd: float | None
    prices: str  # where the prices come from

    def as_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "requests": {
                "generation": self.generation_requests,
                "embedding": self.embedding_requests,
            },
            "tokens": {
                "prompt": self.prompt_tokens,
                "output": self.output_tokens,
                "thinking": self.thinking_tokens,
            },
            "cost_usd": {"online": self.online_usd, "batch": self.batch_usd},
        }


def estimate(
    settings: Settings,
    store: ImageStore | None,
    provider: Provider,
    vocabulary: Vocabulary,
    paths: list[Path],
) -> Estimate:
    """What `indexer run PATHS` would send and cost now (`store`: the collection, None when
    there is none yet); calls no model but countTokens, writes nothing."""
    from indexer.images import prepare

    carried = {i for e in store.batches.entries() for i in e.images} if store is not None else set()
    images = unreadable = 0
    first = None
    from indexer.enrich import own_pictures
    from indexer.pipeline import unindexed

    # Failed images are described again, as the run does.
    for source in unindexed(store, [Path(p) for p in paths], set(), settings.max_file_bytes):
        if source is None:
            unreadable += 1
        elif source.id not in carried:
            images += 1
            first = first or source
    billed = provider.bills_tokens and images > 0
    prompt = output = thinking = 0
    if billed and first is not None:
        prompt = provider.prompt_tokens(prepare(first, settings.image_max_side), vocabulary)
        usage = store.usage.totals()[0] if store is not None else None
        output, thinking = description_tokens(usage, settings.thinking_level)
    # The provider's own picture vectors are billed; the local image model's are not.
    pictures = settings.image_vectors and own_pictures(provider)
    batches = math.ceil(images / max(1, settings.batch_size))
    embedding = batches * (1 + (math.ceil(settings.batch_size / 6) if pictures else 0))
    prices = Prices.load(settings.prices_file)
    online: float | None = 0.0
    batch: float | None = 0.0
    if billed:
        described = prices.generation(
            settings.generation_model, prompt * images, output * images, thinking * images
        )
        per_image = prices.image_embeddings(settings.embedding_model, pictures)
        online = batch = None
        if described is not None and per_image is not None:
            embedded = per_image * images
            online = round(described + embedded, 4)
            # A batch run sends descriptions and embeddings alike through the Batch API.
            batch = round((described + embedded) * prices.batch_share, 4)
    return Estimate(
        images=images,
        unreadable=unreadable,
        generation_requests=images if billed else 0,
        embedding_requests=embedding if billed else 0,
        prompt_tokens=prompt * images,
        output_tokens=output * images,
        thinking_tokens=thinking * images,
        online_usd=online,
        batch_usd=batch,
        prices=f"{prices.source} ({prices.as_of})" if prices.as_of else prices.source,
    )
