"""`indexer`: index folders of clothing photos into the Chroma collection. Each module
registers its commands on the one `app`."""

from indexer.cli import catalog, duplicates, indexing, models
from indexer.cli.app import app, main

__all__ = ["app", "catalog", "duplicates", "indexing", "main", "models"]
