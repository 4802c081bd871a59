"""The vector store: the only package that talks to Chroma.

One collection holds a record per image (id = content hash): the caption as the document,
the "keywords. caption" embedding, and metadata (store/schema.py). `<name>-images` holds each
picture's own vector where an image model gives one; beside them are the failure log, the
catalog's folders, usage, batch jobs and writer leases (store/layout.py names them all). The
main collection records the embedding model that built it and its schema version; opening it
with another model is refused, and an older schema is upgraded.

`ImageStore.open` (store/store.py) returns a store ready for what was asked: reading an
existing collection, or writing (collections created, spec checked, and on the embedded store
the writer lock held). Reading is store/reader.py, searching store/search.py.
"""

from indexer.store.failures import FailureLog
from indexer.store.roots import RootList
from indexer.store.search import where_clause
from indexer.store.store import ImageStore
from indexer.store.usage import UsageLog

__all__ = ["FailureLog", "ImageStore", "RootList", "UsageLog", "where_clause"]
