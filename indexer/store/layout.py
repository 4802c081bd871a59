"""Which collections belong to a catalog, and the only way the store deletes one.

A catalog `<name>` is the main collection plus collections named from it: `<name>-images`,
the logs `<name>-failures`, `-roots`, `-usage`, `-batches`, `-writers`, a staged re-embedding
`<name>--next` (and `--retired` during its switch), and keyword partitions
`<name>--kw--...`. Every one of them carries `OWNER: <name>` in its collection metadata.
A catalog name that ends in a sibling's suffix or holds `--` is refused, so that no catalog's
collections can be taken for another's; and nothing is deleted that is not marked as the
deleting catalog's own.

Deleting works around chroma-core/chroma#7594 (Chroma 1.5.9): `delete_collection` leaves the
collection's list-valued metadata behind, and records written later, which reuse the freed
internal ids, inherit it (a record without `kw_color` then matches `color=black`). Deleting
the records first removes those rows, so `drop` empties a collection before deleting it. The
workaround can go once a Chroma release with the fix is required.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from indexer.errors import StoreError
from indexer.store import keys

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

OWNER = keys.OWNER
IMAGES = "images"
LOG_SUFFIXES = ("failures", "roots", "usage", "batches", "writers", "changes", "dismissed")
NEXT, RETIRED = "--next", "--retired"
PARTITION_INFIX = "--kw--"
COMPLETE = keys.COMPLETE_FACETS
RESERVED_ENDINGS = tuple(f"-{s}" for s in (IMAGES, *LOG_SUFFIXES))
_EMPTY_PAGE = 1_000


def check_catalog_name(name: str) -> str:
    """`name` if a catalog may be called so; ValueError naming the clash otherwise."""
    if "--" in name:
        raise ValueError(
            f"catalog name {name!r} holds '--', which the store reserves for staged "
            "re-embeddings and keyword partitions"
        )
    for ending in RESERVED_ENDINGS:
        if name.endswith(ending):
            raise ValueError(
                f"catalog name {name!r} ends in {ending!r}, the name of a collection the "
                f"store keeps beside catalog {name[: -len(ending)]!r}"
            )
    return name


def siblings(name: str) -> list[str]:
    """Every collection name a catalog keeps beside its main one, partitions aside."""
    kept = [f"{name}-{IMAGES}", *(f"{name}-{s}" for s in LOG_SUFFIXES)]
    return kept + [f"{base}{s}" for base in (name, f"{name}-{IMAGES}") for s in (NEXT, RETIRED)]


def mark(catalog: str) -> dict[str, Any]:
    """Collection metadata that claims a new collection for `catalog`."""
    return {OWNER: catalog}


def owner_of(meta: Mapping[str, Any] | None) -> str | None:
    value = (meta or {}).get(OWNER)
    return value if isinstance(value, str) else None


def find(client: ClientAPI, name: str) -> Collection | None:
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(name, embedding_function=None)
    except NotFoundError:
        return None


def empty(collection: Collection) -> int:
    """Delete every record of `collection`; return how many there were."""
    gone = 0
    while True:
        ids = collection.get(limit=_EMPTY_PAGE, include=[])["ids"]
        if not ids:
            return gone
        collection.delete(ids=list(ids))
        gone += len(ids)


def drop(client: ClientAPI, name: str, catalog: str) -> int | None:
    """Delete collection `name` of `catalog`, records first (chroma-core/chroma#7594).

    Returns how many records it held, or None when there was no such collection (or another
    process dropped it meanwhile). A
    collection not marked as `catalog`'s own is refused (StoreError) and left as it is."""
    found = find(client, name)
    if found is None:
        return None
    owner = owner_of(found.metadata)
    if owner != catalog:
        whose = f"catalog {owner!r}" if owner else "no catalog of this tool"
        raise StoreError(
            f"collection {name!r} belongs to {whose}, not to {catalog!r}; left as it is"
        )
    from chromadb.errors import NotFoundError

    try:
        held = empty(found)
        client.delete_collection(name)
    except NotFoundError:
        return None  # another process dropped it meanwhile (both finishing one switch)
    return held


def partition_names(client: ClientAPI, base: str) -> list[str]:
    """Every partition collection of `base` (a catalog's records or its image vectors)."""
    prefix = base + PARTITION_INFIX
    return [c.name for c in client.list_collections() if c.name.startswith(prefix)]


def drop_catalog(client: ClientAPI, catalog: str) -> list[tuple[str, int]]:
    """Drop every collection of `catalog`, with each one's record count; a collection that
    only bears one of its names (another catalog's, another tool's) is left, with a
    warning."""
    names = [catalog, *siblings(catalog)]
    for base in (catalog, f"{catalog}-{IMAGES}"):
        names += partition_names(client, base)
    dropped = []
    for name in names:
        try:
            held = drop(client, name, catalog)
        except StoreError as exc:
            log.warning("%s", exc)
            continue
        if held is not None:
            dropped.append((name, held))
    return dropped
