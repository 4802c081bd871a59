"""The controlled vocabulary: facets and their allowed keywords, loaded from TOML."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from indexer.errors import ConfigError

# A facet is a metadata key on every record ("kw_<facet>", "ikw_<facet>", and a partition's
# "p<8 hex>_<facet>"), and Chroma Cloud takes at most 32 keys a record, each of at most 36
# bytes: the store's own 14 keys leave room for 16 facets (two spare), and a 26-byte name
# makes a partition's 36-byte key.
_FACET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,25}$")
MAX_FACETS = 16

Keywords = dict[str, list[str]]
Where = Mapping[str, Sequence[str]]  # facet -> keywords a record must all have


def _folded(word: str) -> str:
    return " ".join(re.split(r"[\s_-]+", word.strip().casefold())).strip()


@dataclass(frozen=True)
class Filters:
    """Keyword filters: a record must have every `where` keyword and no `exclude` one."""

    where: Where = field(default_factory=dict)
    exclude: Where = field(default_factory=dict)

    @classmethod
    def of(cls, given: Filters | Where | None) -> Filters:
        """`given` as Filters: a plain mapping is its `where`."""
        return given if isinstance(given, Filters) else cls(dict(given or {}))

    def __bool__(self) -> bool:
        return bool(self.required or self.excluded)

    @property
    def required(self) -> list[tuple[str, str]]:
        return [(facet, word) for facet, words in self.where.items() for word in words]

    @property
    def excluded(self) -> list[tuple[str, str]]:
        return [(facet, word) for facet, words in self.exclude.items() for word in words]

    def but(self, where: Where) -> Filters:
        """These exclusions with other required keywords."""
        return replace(self, where=where)

    def matches(self, keywords: Mapping[str, Sequence[str]]) -> bool:
        return all(w in keywords.get(f, ()) for f, w in self.required) and not any(
            w in keywords.get(f, ()) for f, w in self.excluded
        )


FilterLike = Filters | Where | None


def matches(keywords: Mapping[str, Sequence[str]], where: FilterLike) -> bool:
    """Whether a record's keywords have every required keyword (AND) and no excluded one."""
    return Filters.of(where).matches(keywords)


@dataclass(frozen=True)
class Vocabulary:
    facets: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        if not self.facets:
            raise ConfigError("vocabulary has no facets")
        if len(self.facets) > MAX_FACETS:
            raise ConfigError(
                f"vocabulary has {len(self.facets)} facets; at most {MAX_FACETS} are allowed "
                "(each is a metadata key on every record, and Chroma Cloud takes 32 a record)"
            )
        for facet, words in self.facets.items():
            if not _FACET_NAME.match(facet):
                raise ConfigError(
                    f"facet name {facet!r} must be lower-case letters, digits and underscores, "
                    "at most 26 of them"
                )
            if not words:
                raise ConfigError(f"facet {facet!r} has no keywords")
            lowered = [_folded(w) for w in words]
            if len(set(lowered)) != len(lowered):
                raise ConfigError(f"facet {facet!r} lists a keyword twice")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "vocabulary") -> Vocabulary:
        facets: dict[str, tuple[str, ...]] = {}
        for facet, words in data.items():
            if not isinstance(words, list) or not all(
                isinstance(w, str) and w.strip() for w in words
            ):
                raise ConfigError(f"{source}: facet {facet!r} must be a list of non-empty strings")
            facets[facet] = tuple(w.strip() for w in words)
        return cls(facets)

    @classmethod
    def load(cls, path: Path | None = None) -> Vocabulary:
        """Load a TOML vocabulary file, or the packaged default when `path` is None."""
        if path is None:
            text = resources.files("indexer").joinpath("default_vocabulary.toml").read_text()
            source = "default vocabulary"
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read vocabulary {path}: {exc.strerror}") from exc
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"vocabulary {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                    f"at offset {exc.start}); save it as UTF-8"
                ) from exc
            source = str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
        return cls.from_mapping(data, source)

    @property
    def fingerprint(self) -> str:
        """Stable short hash, recorded with the records a vocabulary produced."""
        blob = json.dumps({k: list(v) for k, v in self.facets.items()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def all_keywords(self) -> list[str]:
        return sorted({w for words in self.facets.values() for w in words})

    def canonical(self, facet: str, word: str) -> str | None:
        """The allowed spelling of `word` in `facet`, matched regardless of case and of how
        its parts are joined ("long sleeve top" is "long-sleeve top", "t shirt" "T-shirt")."""
        folded = _folded(word)
        for allowed in self.facets.get(facet, ()):
            if _folded(allowed) == folded:
                return allowed
        return None

    def facet_of(self, word: str) -> str | None:
        for facet in self.facets:
            if self.canonical(facet, word) is not None:
                return facet
        return None

    @property
    def size(self) -> int:
        """How many keywords the facets list, all told (a response schema's enum values)."""
        return sum(len(words) for words in self.facets.values())

    def response_schema(self, enums: bool = True) -> dict[str, Any]:
        """JSON schema of one image description, with every facet's keywords as an enum, or
        (`enums` false, for a vocabulary too large for the API's schemas) as free strings
        that the keyword mapper then maps onto the vocabulary."""
        facet_props = {
            facet: {
                "type": "array",
                "items": {"type": "string", **({"enum": list(words)} if enums else {})},
            }
            for facet, words in self.facets.items()
        }
        return {
            "type": "object",
            "properties": {
                "keywords": {
                    "type": "object",
                    "properties": facet_props,
                    "required": list(self.facets),
                },
                "caption": {"type": "string"},
            },
            "required": ["keywords", "caption"],
        }

    def describe(self) -> str:
        """The facets and keywords as prompt text."""
        return "\n".join(f"- {facet}: {', '.join(words)}" for facet, words in self.facets.items())

    def empty(self) -> Keywords:
        return {facet: [] for facet in self.facets}
