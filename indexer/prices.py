"""What Gemini calls cost: a price table shipped with the project (indexer/prices.toml, dated,
naming its source), or one the user points INDEXER_PRICES at."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import ConfigError

if TYPE_CHECKING:
    from indexer.records import Usage

MILLION = 1_000_000
# What a description is guessed to cost before any is answered: its output (keywords and a
# caption) and what a Gemini 3 model thinks at each level, both rough; and the tokens of an
# image's embeddings ("keywords. caption", and the picture for a multimodal model).
OUTPUT_GUESS = 60
THINKING_GUESS = {"minimal": 0, "low": 120, "medium": 480, "high": 1500}
DOCUMENT_TOKENS = 30
PICTURE_TOKENS = 258


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float = 0.0  # thinking is billed as output
    image_input: float | None = None  # an embedding model's price for pictures, if its own


@dataclass(frozen=True)
class Prices:
    models: dict[str, ModelPrice]
    source: str
    as_of: str
    batch_share: float  # what the Batch API bills of the online price

    @classmethod
    def load(cls, path: Path | None = None) -> Prices:
        where = str(path) if path is not None else "the shipped price table"
        try:
            text = (
                Path(path).read_text(encoding="utf-8")
                if path is not None
                else resources.files("indexer").joinpath("prices.toml").read_text()
            )
            data = tomllib.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read prices from {where}: {exc}") from exc
        try:
            return cls(
                models={
                    str(name): _model_price(entry)
                    for name, entry in dict(data.get("models", {})).items()
                },
                source=str(data.get("source", where)),
                as_of=str(data.get("as_of", "")),
                batch_share=float(data.get("batch_share", 0.5)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"prices in {where}: {exc}") from exc

    def of(self, model: str) -> ModelPrice | None:
        """The price of `model` ("models/..." and version suffixes as the API names them)."""
        name = model.rsplit("/", 1)[-1]
        best = max((m for m in self.models if name.startswith(m)), key=len, default=None)
        return self.models[best] if best is not None else None

    def generation(self, model: str, prompt: int, output: int, thinking: int) -> float | None:
        """USD online for a generation model's tokens; None for a model the table lacks."""
        price = self.of(model)
        if price is None:
            return None
        return (prompt * price.input + (output + thinking) * price.output) / MILLION

    def image_embeddings(self, model: str, pictures: bool) -> float | None:
        """USD online for embedding one image's text (and its picture, with `pictures`)."""
        return self.embedding(model, DOCUMENT_TOKENS, PICTURE_TOKENS if pictures else 0)

    def embedding(self, model: str, text: int, images: int = 0) -> float | None:
        """USD online for an embedding model's text and picture tokens."""
        price = self.of(model)
        if price is None:
            return None
        image_price = price.image_input if price.image_input is not None else price.input
        return (text * price.input + images * image_price) / MILLION


def description_tokens(usage: Usage | None, thinking_level: str) -> tuple[int, int]:
    """Output and thinking tokens one description is expected to take: the average of the
    answers in `usage` (a collection's runs, or this run's), else the first-run guesses."""
    if usage is not None and usage.generation_requests:
        answered = usage.generation_requests
        return round(usage.output_tokens / answered), round(usage.thinking_tokens / answered)
    return OUTPUT_GUESS, THINKING_GUESS.get(thinking_level.lower(), THINKING_GUESS["high"])


def _model_price(entry: Any) -> ModelPrice:
    if not isinstance(entry, dict) or "input" not in entry:
        raise ValueError(f"each model needs an input price; got {entry!r}")
    image = entry.get("image_input")
    return ModelPrice(
        float(entry["input"]),
        float(entry.get("output", 0.0)),
        float(image) if image is not None else None,
    )
