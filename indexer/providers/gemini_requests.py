"""What requests to Gemini hold, the same online, in batch jobs and for countTokens: a
description's instruction, response schema and photo; an embedding's contents and options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from indexer.config import Settings
    from indexer.images import PreparedImage
    from indexer.vocabulary import Vocabulary

PROMPT = """You tag and caption photos of clothing for a shop's catalogue.
Return the keywords that describe the main garment in the photo, choosing only from these
facets and keywords:
{facets}
Leave a facet's list empty when none of its keywords clearly applies; never guess.
Also write one concise caption sentence naming the garment's color, type, material, style
and audience where they are visible, e.g. "A red cotton summer dress for women."
"""

# Models that embed text and images into one space. They take no task_type: the task is
# written into the text, in the documented forms below.
MULTIMODAL_EMBEDDING_MODELS = ("gemini-embedding-2",)
TASK_PREFIXES = {
    "RETRIEVAL_DOCUMENT": "title: none | text: {}",
    "RETRIEVAL_QUERY": "task: search result | query: {}",
    "SEMANTIC_SIMILARITY": "task: sentence similarity | query: {}",
}

# The API refuses a response schema whose enums make "too many states for serving", reported
# from about 240 values; a vocabulary larger than this is asked for as free keywords at once.
MAX_SCHEMA_KEYWORDS = 200


def generation_config(settings: Settings, vocabulary: Vocabulary, free_keywords: bool) -> Any:
    """The one request configuration. A vocabulary past MAX_SCHEMA_KEYWORDS (or, with
    `free_keywords`, one the API refused as enums) is asked for as free keywords, mapped onto
    the vocabulary afterwards, as off-vocabulary answers always are."""
    from google.genai import types

    enums = not free_keywords and vocabulary.size <= MAX_SCHEMA_KEYWORDS
    return types.GenerateContentConfig(
        system_instruction=PROMPT.format(facets=vocabulary.describe()),
        response_mime_type="application/json",
        response_json_schema=vocabulary.response_schema(enums),
        thinking_config=types.ThinkingConfig(
            thinking_level=types.ThinkingLevel(settings.thinking_level.upper())
        ),
    )


def request_contents(settings: Settings, image: PreparedImage) -> list[Any]:
    """The photo, at the configured media resolution, and the request."""
    from google.genai import types

    resolution = f"MEDIA_RESOLUTION_{settings.media_resolution.upper()}"
    return [
        types.Part.from_bytes(
            data=image.jpeg, mime_type=image.mime_type, media_resolution=resolution
        ),
        "Tag and caption this garment.",
    ]


def is_multimodal(model: str) -> bool:
    return model.rsplit("/", 1)[-1].startswith(MULTIMODAL_EMBEDDING_MODELS)


def text_contents(settings: Settings, texts: Sequence[str], task_type: str) -> list[Any]:
    """One Content per text (a list of strings would be merged into ONE content, and so
    come back as one vector for all of them), the task written in for a multimodal model."""
    from google.genai import types

    if is_multimodal(settings.embedding_model):
        texts = [TASK_PREFIXES[task_type].format(text) for text in texts]
    return [types.Content(role="user", parts=[types.Part.from_text(text=t)]) for t in texts]


def picture_contents(images: Sequence[PreparedImage]) -> list[Any]:
    """One Content per picture, for a multimodal embedding model."""
    from google.genai import types

    return [
        types.Content(
            role="user", parts=[types.Part.from_bytes(data=i.jpeg, mime_type=i.mime_type)]
        )
        for i in images
    ]


def composed_contents(images: Sequence[PreparedImage], texts: Sequence[str]) -> list[Any]:
    """One Content per picture and its words: the model merges a content's parts into one
    vector, so the words change what the picture stands for."""
    from google.genai import types

    return [
        types.Content(
            role="user",
            parts=[
                types.Part.from_bytes(data=image.jpeg, mime_type=image.mime_type),
                types.Part.from_text(text=text),
            ],
        )
        for image, text in zip(images, texts, strict=True)
    ]


def embedding_config(settings: Settings, task_type: str | None) -> Any:
    """The task as the model takes it (none for a multimodal one) and the vector size."""
    from google.genai import types

    multimodal = is_multimodal(settings.embedding_model)
    return types.EmbedContentConfig(
        task_type=None if multimodal else task_type,
        output_dimensionality=settings.embedding_dim,
    )
