"""Reading Gemini's answers: a structured description out of a generateContent response,
and vectors out of an embedding answer, validated, with blocked and malformed responses
turned into typed errors."""

from __future__ import annotations

import json
from typing import Any

from indexer.errors import BlockedResponseError, MalformedResponseError
from indexer.records import Description
from indexer.vectors import unit_rows

# Finish reasons that mean the answer was withheld, not cut short.
BLOCKING_FINISH = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "LANGUAGE",
    }
)


def parse_description(response: Any) -> Description:
    """The description in a generateContent response, or a typed error saying why not."""
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and feedback.block_reason:
        reason = getattr(feedback.block_reason, "value", feedback.block_reason)
        raise BlockedResponseError(f"request blocked by the API: {reason}")
    candidates = response.candidates or []
    if not candidates:
        raise MalformedResponseError("the API returned no candidates")
    candidate = candidates[0]
    finish = str(getattr(candidate.finish_reason, "value", candidate.finish_reason) or "")
    if finish in BLOCKING_FINISH:
        raise BlockedResponseError(f"response blocked by the API (finish reason {finish})")
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if getattr(p, "text", None) and not p.thought)
    if not text.strip():
        raise MalformedResponseError(f"the model returned no text (finish reason {finish or '?'})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedResponseError(f"model output is not valid JSON: {exc.msg}") from exc
    return description_from_json(data)


def _unique(words: list[str]) -> list[str]:
    """Keywords without repeats (case-insensitive), first spelling kept: the response schema
    cannot ask the model for unique items."""
    seen: dict[str, str] = {}
    for word in words:
        seen.setdefault(word.strip().casefold(), word.strip())
    return list(seen.values())


def description_from_json(data: Any) -> Description:
    """Validate the structured output's shape; anything else is a malformed response."""
    if not isinstance(data, dict):
        raise MalformedResponseError("model output is not a JSON object")
    keywords, caption = data.get("keywords"), data.get("caption")
    if not isinstance(keywords, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(w, str) for w in v)
        for k, v in keywords.items()
    ):
        raise MalformedResponseError("model output lacks a keywords object of string lists")
    if not isinstance(caption, str) or not caption.strip():
        raise MalformedResponseError("model output lacks a caption")
    return Description({k: _unique(v) for k, v in keywords.items()}, " ".join(caption.split()))


def embedding_vectors(got: list[list[float]], asked: int, dim: int) -> list[list[float]]:
    """The vectors of an embedding answer, one per content asked for, of `dim` values, at unit
    length (the model returns unit vectors only at full size)."""
    if len(got) != asked:
        raise MalformedResponseError(f"asked for {asked} embeddings, the API returned {len(got)}")
    bad = next((len(v) for v in got if len(v) != dim), None)
    if bad is not None:
        raise MalformedResponseError(f"embedding has {bad} dimensions, expected {dim}")
    return list(unit_rows(got).tolist()) if got else []
