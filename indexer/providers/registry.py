"""Model providers, registered by name.

Built-ins go through the same path as plugins: a name mapped to `module:Class`, imported only
when chosen, so that importing this package loads no model code.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from indexer.errors import ConfigError

if TYPE_CHECKING:
    from indexer.config import Settings
    from indexer.providers.base import Provider

BUILTIN_PROVIDERS: dict[str, str] = {
    "gemini": "indexer.providers.gemini:GeminiProvider",
    "local": "indexer.providers.local:LocalProvider",
}
ENTRY_POINT_GROUP = "clothing_indexer.providers"


def available() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTIN_PROVIDERS}


def default_name(settings: Settings) -> str:
    """Gemini when an API key is configured, else the offline provider."""
    return "gemini" if settings.google_api_key else "local"


def create(name: str, settings: Settings) -> Provider:
    """Instantiate provider `name` from settings."""
    registry = available()
    if name not in registry:
        raise ConfigError(
            f"unknown provider {name!r}; choose one of: {', '.join(sorted(registry))}"
        )
    module_name, _, class_name = registry[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = cls.from_settings(settings)
    return provider
