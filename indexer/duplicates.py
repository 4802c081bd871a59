"""Duplicate photos in a catalog, in kinds never confused:

- `exact`: the same bytes at several paths (one record, several paths: store/paths.py);
- `near`: the same picture after a copy's usual changes, found by pixels (likeness.py), the
  same on every provider;
- `variants`: records whose picture (or caption) vectors are almost the same although their
  pixels are not: similar photos, not copies; listed only when asked for.

A pair someone dismissed is never reported again. Each group lists first the copy it
suggests keeping (most pixels, then the best format, then the oldest file); nothing is ever
deleted or changed on disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from indexer import likeness
from indexer.errors import NoSuchRecordError, QueryError

if TYPE_CHECKING:
    from indexer.config import Settings
    from indexer.store import ImageStore

KINDS = ("exact", "near", "variants")
# Cosine similarity at or above which two records' vectors make them variants.
VARIANT_SCORE = 0.97
_VARIANT_NEIGHBOURS = 5
# Formats by how much of the picture they keep: lossless first.
_FORMAT_RANK = {"PNG": 0, "TIFF": 0, "WEBP": 1, "JPEG": 2, "BMP": 3, "GIF": 4}


@dataclass(frozen=True)
class Copy:
    id: str
    path: str
    width: int = 0  # 0: the file could not be read
    height: int = 0
    format: str = ""
    bytes: int = 0
    mtime: float = 0.0

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Group:
    kind: str
    images: list[Copy]  # the one suggested to keep first


def examined(image_id: str, path: str) -> Copy:
    """What a copy is, from its file's header (a regular file only; nothing decoded)."""
    from PIL import Image

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return Copy(image_id, path)
        with Image.open(path) as img:
            width, height = img.size
            kind = str(img.format or "")
    except (OSError, ValueError, Image.DecompressionBombError):
        return Copy(image_id, path)
    return Copy(image_id, path, width, height, kind, info.st_size, info.st_mtime)


def keep_first(copies: Iterable[Copy]) -> list[Copy]:
    """The copy to keep first: most pixels, then the best format, then the oldest file."""
    return sorted(copies, key=lambda c: (-c.pixels, _FORMAT_RANK.get(c.format, 9), c.mtime))


def find(store: ImageStore, kinds: Sequence[str] = ("exact", "near")) -> list[Group]:
    """The catalog's groups of the kinds asked for, without the dismissed pairs."""
    dismissed = store.dismissals.pairs()
    places: dict[str, list[str]] = {}
    prints: dict[str, list[int]] = {}
    for record in store.records():
        places[record.id] = [record.path, *record.copies]
        found = likeness.decode(str(record.metadata.get("likeness", "")))
        if found is not None:
            prints[record.id] = found
    groups: list[Group] = []
    if "exact" in kinds:
        for rid, paths in places.items():
            for members in _components(paths, _pairs(paths), dismissed):
                groups.append(_group("exact", [examined(rid, p) for p in members]))
    paired: set[frozenset[str]] = set()
    if "near" in kinds or "variants" in kinds:
        ids = list(prints)
        near = [(ids[i], ids[j]) for i, j, _ in likeness.near_pairs([prints[r] for r in ids])]
        paired = {frozenset(p) for p in near}
        if "near" in kinds:
            for members in _components(ids, near, dismissed):
                groups.append(_group("near", [examined(r, places[r][0]) for r in members]))
    if "variants" in kinds:
        close = [p for p in _variants(store) if frozenset(p) not in paired]
        for members in _components(list(places), close, dismissed):
            groups.append(_group("variants", [examined(r, places[r][0]) for r in members]))
    return groups


def dismiss(store: ImageStore, first: str, second: str) -> None:
    """Record that two images (each a record id or one of its paths) are not duplicates:
    two records by their ids, two paths of one record by those paths."""
    a, b = _resolved(store, first), _resolved(store, second)
    if a[0] != b[0]:
        store.dismissals.dismiss(a[0], b[0])
    elif a[1] != b[1]:
        store.dismissals.dismiss(a[1], b[1])
    else:
        raise QueryError(f"{first} and {second} are the same image")


def _resolved(store: ImageStore, ref: str) -> tuple[str, str]:
    """(id, path) of an image named by record id or by any of its paths."""
    from indexer.files import absolute

    if len(ref) == 32 and all(c in "0123456789abcdef" for c in ref.lower()):
        found = store.record(ref.lower())
        if found is not None:
            return found.id, found.path
    path = str(absolute(Path(ref).expanduser()))
    image_id = store.holding(path)
    if image_id is None:
        raise NoSuchRecordError(f"{ref}: no such image in the catalog; give an id or a path")
    return image_id, path


def fill_likeness(
    store: ImageStore, settings: Settings, progress: Callable[[int, int], None]
) -> tuple[int, int]:
    """Fingerprint the records made before fingerprints were: each file read once, and only
    when it still holds the indexed bytes. Returns (fingerprinted, unreadable)."""
    from indexer.images import reread

    missing = [(r.id, r.path) for r in store.records() if not r.metadata.get("likeness")]
    done = unreadable = 0
    found: dict[str, str] = {}
    for count, (rid, path) in enumerate(missing, 1):
        image = reread(Path(path), rid, settings.image_max_side, settings.max_file_bytes)
        if image is None:
            unreadable += 1
        else:
            found[rid] = image.likeness
        if len(found) >= 100 or count == len(missing):
            store.set_likeness(found)
            done += len(found)
            found = {}
        progress(count, len(missing))
    return done, unreadable


def _group(kind: str, members: list[Copy]) -> Group:
    return Group(kind, keep_first(members))


def _pairs(items: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(items) for b in items[i + 1 :]]


def _components(
    items: Sequence[str], pairs: Iterable[tuple[str, str]], dismissed: set[frozenset[str]]
) -> list[list[str]]:
    """Groups of two or more joined by pairs no one dismissed (union-find)."""
    parent = {item: item for item in items}

    def root(item: str) -> str:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b in pairs:
        if frozenset((a, b)) not in dismissed:
            parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for item in items:
        groups.setdefault(root(item), []).append(item)
    return [members for members in groups.values() if len(members) > 1]


def _variants(store: ImageStore) -> list[tuple[str, str]]:
    """Pairs of records whose picture vectors (caption vectors, without pictures) are at
    least VARIANT_SCORE alike: one nearest-neighbour search per record."""
    pictures = store.image_spec is not None
    pairs = []
    for record in store.records(vectors=True):
        vector = record.image_embedding if pictures else record.embedding
        if vector is None:
            continue
        for near in store.nearest(vector, _VARIANT_NEIGHBOURS + 1, None, pictures):
            if near.id != record.id and near.score >= VARIANT_SCORE and record.id < near.id:
                pairs.append((record.id, near.id))
    return pairs
