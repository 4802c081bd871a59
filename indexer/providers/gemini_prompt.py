"""What a description request to Gemini holds: the instruction, the response schema and the
photo, the same online, in batch jobs and for countTokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
