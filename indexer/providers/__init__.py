"""Model providers: one class per provider (providers/base.py declares the interface), chosen
by name through the registry, which imports a provider's module only when it is chosen."""

from indexer.providers.registry import available, create, default_name

__all__ = ["available", "create", "default_name"]
