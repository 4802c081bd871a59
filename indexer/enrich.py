"""The one recipe that turns prepared images into records: describe, correct keywords, embed.

Ingestion and `query image` both go through `Enricher.enrich`, so a query image is held to
exactly the rules an indexed image is: an answer none of whose words fit the vocabulary is a
failure in both, never a vector built from nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import ProviderError, ProviderUnavailableError, one_line
from indexer.keywords import EmbeddingCache, KeywordMapper
from indexer.records import Description, EmbeddingSpec, Failure, ImageRecord, StoredRecord
from indexer.vocabulary import Keywords, Vocabulary

if TYPE_CHECKING:
    from indexer.budget import Budget
    from indexer.config import Settings
    from indexer.images import PreparedImage
    from indexer.providers.base import Provider

log = logging.getLogger(__name__)

Outcome = ImageRecord | Failure


@dataclass(frozen=True)
class ImageVectors:
    """Where records get their image vectors from, and the space those vectors live in."""

    spec: EmbeddingSpec
    embed: Callable[[Sequence[PreparedImage]], list[list[float]]]


def own_pictures(provider: Provider) -> bool:
    """Whether the provider embeds pictures itself (billed, where it bills), rather than
    leaving them to the local image model."""
    return provider.supports_image_embeddings and provider.image_spec is not None


def image_vectors(provider: Provider, enabled: bool, cache: Path) -> ImageVectors | None:
    """The provider's own image vectors if it has them, else the local image model when it is
    installed (so that Gemini-built collections get them too), else none."""
    if not enabled:
        return None
    if own_pictures(provider) and provider.image_spec is not None:
        return ImageVectors(provider.image_spec, provider.embed_images)
    from indexer import vision
    from indexer.images import picture

    if not vision.installed():
        return None
    # One thread: beside a remote provider the image model is off the critical path (one
    # core encodes several images a second, more than an API quota describes), and the other
    # core stays free for the request threads.
    encoder = vision.ImageEncoder(cache, threads=1)
    encoder.preload()
    return ImageVectors(
        vision.IMAGE_SPEC,
        lambda images: encoder.encode([picture(img) for img in images]).tolist(),
    )


def document_text(keywords: Keywords, caption: str) -> str:
    """The text that is embedded for an image: "keywords. caption", as in the notebook."""
    words = [w for facet_words in keywords.values() for w in facet_words]
    return f"{', '.join(words)}. {caption}" if words else caption


def keyword_mapper(settings: Settings, provider: Provider, vocabulary: Vocabulary) -> KeywordMapper:
    spec = provider.embedding_spec
    cache = EmbeddingCache(settings.cache_dir, f"{spec.provider}-{spec.model}-{spec.dim}-words")
    return KeywordMapper(vocabulary, provider.embed_words, settings.keyword_threshold, cache)


@dataclass(frozen=True)
class Tagged:
    """An answer mapped into the vocabulary: all of a record but its vectors. Plain data,
    since a batch run keeps it in its log while the embedding job runs."""

    id: str
    path: str
    caption: str
    keywords: Keywords  # mapped into the vocabulary
    raw_keywords: Keywords  # as the model answered
    corrections: dict[str, str]

    @property
    def document(self) -> str:
        return document_text(self.keywords, self.caption)

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "caption": self.caption,
            "keywords": self.keywords,
            "raw_keywords": self.raw_keywords,
            "corrections": self.corrections,
        }

    @classmethod
    def from_json(cls, image_id: str, data: dict[str, Any]) -> Tagged:
        return cls(
            image_id,
            str(data["path"]),
            str(data["caption"]),
            {str(f): [str(w) for w in ws] for f, ws in dict(data["keywords"]).items()},
            {str(f): [str(w) for w in ws] for f, ws in dict(data["raw_keywords"]).items()},
            {str(k): str(v) for k, v in dict(data.get("corrections", {})).items()},
        )


class Enricher:
    """Owns the provider, the vocabulary, the keyword mapper and the source of image vectors."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        vocabulary: Vocabulary,
        pictures: ImageVectors | None = None,
    ) -> None:
        self.provider = provider
        self.vocabulary = vocabulary
        self.mapper = keyword_mapper(settings, provider, vocabulary)
        self.pictures = pictures
        self.budget: Budget | None = None  # `indexer run --max-cost`

    @classmethod
    def create(cls, settings: Settings, provider: Provider, vocabulary: Vocabulary) -> Enricher:
        """An enricher with image vectors as the settings ask (INDEXER_IMAGE_VECTORS)."""
        pictures = image_vectors(provider, settings.image_vectors, settings.models_dir)
        return cls(settings, provider, vocabulary, pictures)

    @property
    def spec(self) -> EmbeddingSpec:
        return self.provider.embedding_spec

    @property
    def image_spec(self) -> EmbeddingSpec | None:
        return self.pictures.spec if self.pictures is not None else None

    def enrich(self, images: Sequence[PreparedImage]) -> list[Outcome]:
        """A record or a failure per image, in the order given. One bad image never sinks
        the others; an embedding request that fails fails the images it carried. Raises
        ProviderUnavailableError when no image can succeed now."""
        outcomes, stopped = self.enrich_until_stopped(images)
        if stopped is not None:
            raise stopped
        return outcomes

    def enrich_until_stopped(
        self, images: Sequence[PreparedImage]
    ) -> tuple[list[Outcome], ProviderUnavailableError | None]:
        """The outcomes of the images the API described before it became unavailable (a
        quota spent for the day, its host unreachable), in the order given, and that error
        if it did: the images without an outcome are neither recorded nor failed."""
        try:
            answers = self._described(images)
        except ProviderUnavailableError as exc:  # counting a budget's tokens
            return [], exc
        stopped = next((a for a in answers if isinstance(a, ProviderUnavailableError)), None)
        kept = [
            (image, answer)
            for image, answer in zip(images, answers, strict=True)
            if not isinstance(answer, ProviderUnavailableError)
        ]
        try:
            outcomes = self.complete([i for i, _ in kept], [a for _, a in kept])
        except ProviderUnavailableError as exc:  # while embedding: nothing of this batch
            return [], exc
        return outcomes, stopped

    def _described(self, images: Sequence[PreparedImage]) -> list[Description | ProviderError]:
        """The provider's answers, within the run's budget (budget.py): the images past it
        get BudgetReachedError instead, and stay pending."""
        budget = self.budget if self.provider.bills_tokens else None
        if budget is None or not images:
            return self.provider.describe(images, self.vocabulary) if images else []
        budget.count_prompt(lambda: self.provider.prompt_tokens(images[0], self.vocabulary))
        allowed, reserved = budget.admit(len(images), self.provider.usage)
        try:
            answers = self.provider.describe(images[:allowed], self.vocabulary) if allowed else []
        finally:
            budget.done(reserved)
        if allowed < len(images):
            usage = self.provider.usage
            answers += [budget.reached(usage, usage.generation_requests)] * (len(images) - allowed)
        return answers

    def complete(
        self, images: Sequence[PreparedImage], answers: Sequence[Description | ProviderError]
    ) -> list[Outcome]:
        """The rest of the recipe once the model has answered: keywords mapped into the
        vocabulary, text and picture embedded. An embedding failure fails the images it
        carried; ProviderUnavailableError is raised (the run stops, the images stay pending)."""
        by_id = {image.id: image for image in images}
        outcomes: dict[str, Outcome] = {}
        tagged: list[Tagged] = []
        try:
            tagged, failures = self.tag(images, answers)
            outcomes.update((f.id, f) for f in failures)
            mine = [by_id[t.id] for t in tagged]
            vectors = self.provider.embed_documents([t.document for t in tagged])
            for record in self.records(tagged, mine, vectors, self.picture_vectors(mine)):
                outcomes[record.id] = record
        except ProviderUnavailableError:
            raise
        except ProviderError as exc:
            reason = f"embedding failed: {one_line(exc)}"
            for image, answer in zip(images, answers, strict=True):
                if isinstance(answer, Description):
                    outcomes.setdefault(image.id, _failure(image, reason))
        return [outcomes[image.id] for image in images]

    def tag(
        self, images: Sequence[PreparedImage], answers: Sequence[Description | ProviderError]
    ) -> tuple[list[Tagged], list[Failure]]:
        """Map each answer's keywords into the vocabulary (embedding words it has not seen
        before). An error, or an answer none of whose words fit, is a failure (retried next
        run), never a record without keywords."""
        failures: list[Failure] = []
        described: list[tuple[PreparedImage, Description]] = []
        for image, answer in zip(images, answers, strict=True):
            if isinstance(answer, Description):
                described.append((image, answer))
            else:
                failures.append(_failure(image, one_line(answer)))
        if not described:
            return [], failures
        tagged = []
        mapped = self.mapper.map_many([answer.keywords for _, answer in described])
        for (image, answer), keywords in zip(described, mapped, strict=True):
            if keywords.dropped and not any(keywords.keywords.values()):
                words = ", ".join(keywords.dropped)
                failures.append(_failure(image, f"no keyword fits the vocabulary: {words}"))
                continue
            tagged.append(
                Tagged(
                    image.id,
                    str(image.path),
                    answer.caption,
                    keywords.keywords,
                    answer.keywords,
                    keywords.corrections,
                )
            )
        return tagged, failures

    @property
    def remote_pictures(self) -> bool:
        """Whether picture vectors come from the provider (billed, and sent in a batch run's
        embedding jobs) rather than from the local image model."""
        return self.pictures is not None and own_pictures(self.provider)

    def picture_vectors(self, images: Sequence[PreparedImage]) -> list[list[float] | None]:
        if self.pictures is None or not images:
            return [None] * len(images)
        return list(self.pictures.embed(images))

    def records(
        self,
        tagged: Sequence[Tagged],
        images: Sequence[PreparedImage],
        vectors: Sequence[list[float]],
        pictures: Sequence[list[float] | None],
    ) -> list[ImageRecord]:
        """Records of tagged answers, from their images (as read) and vectors, in order."""
        model_ids = {"provider": self.provider.name, **self.provider.model_ids}
        return [
            ImageRecord(
                id=t.id,
                path=t.path,
                caption=t.caption,
                keywords=t.keywords,
                raw_keywords=t.raw_keywords,
                corrections=t.corrections,
                embedding=vector,
                model_ids=model_ids,
                vocabulary=self.vocabulary.fingerprint,
                image_embedding=picture,
                size=image.size,
                mtime_ns=image.mtime_ns,
                likeness=image.likeness,
            )
            for t, image, vector, picture in zip(tagged, images, vectors, pictures, strict=True)
        ]

    def reembed(
        self, stored: Sequence[StoredRecord], pictures: Sequence[PreparedImage | None]
    ) -> list[ImageRecord]:
        """Records as they were, with vectors from this enricher's models: the same
        "keywords. caption" text, and the picture where it is given. No description."""
        if not stored:
            return []
        vectors = self.provider.embed_documents(
            [document_text(r.keywords, r.caption) for r in stored]
        )
        images = [p for p in pictures if p is not None]
        embedded = iter(self.pictures.embed(images) if self.pictures and images else [])
        return [
            ImageRecord(
                id=r.id,
                path=r.path,
                caption=r.caption,
                keywords=r.keywords,
                raw_keywords=_json(r.metadata.get("raw_keywords_json"), r.keywords),
                corrections=_json(r.metadata.get("corrections_json"), {}),
                embedding=vector,
                model_ids={
                    **{k: str(r.metadata[k]) for k in _KEPT_IDS if k in r.metadata},
                    "embedding_model": self.spec.model,
                    **({"image_model": self.pictures.spec.model} if self.pictures else {}),
                },
                vocabulary=str(r.metadata.get("vocabulary", "")),
                image_embedding=next(embedded) if picture is not None and self.pictures else None,
                size=int(r.metadata.get("size", 0)),
                mtime_ns=int(r.metadata.get("mtime_ns", 0)),
                likeness=str(r.metadata.get("likeness", ""))
                or (picture.likeness if picture else ""),
            )
            for r, vector, picture in zip(stored, vectors, pictures, strict=True)
        ]


# Who described a record stays true when only its vectors change.
_KEPT_IDS = ("provider", "generation_model")


def _json(raw: object, default: Any) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) else default
    except ValueError:
        return default


def _failure(image: PreparedImage, reason: str) -> Failure:
    return Failure(image.id, str(image.path), reason)
