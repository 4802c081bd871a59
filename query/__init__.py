"""Search the clothing image collection by text or by example image, filtered by keyword.

from query import QueryClient
hits = QueryClient.from_env().text("colorful dress", where={"season": "summer"}, limit=5)
"""

from indexer.errors import EmbeddingMismatchError, IndexerError, QueryError, StoreError
from query.client import QueryClient, QueryResult
from query.filters import parse_where

__all__ = [
    "EmbeddingMismatchError",
    "IndexerError",
    "QueryClient",
    "QueryError",
    "QueryResult",
    "StoreError",
    "parse_where",
]
