"""The gallery's thumbnail cache: JPEGs of at most 320 px a side, made on first request,
written atomically (a link planted in the cache is replaced, never written through), read
only as regular files, and pruned of what the server did not make or no longer serves; and
which original files were checked to hold a record's bytes (`Verified`)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

from indexer.errors import ImageError, IndexerError
from indexer.files import atomic_write, read_regular
from indexer.images import open_image
from query.client import QueryClient

log = logging.getLogger(__name__)

IMAGE_ID = re.compile(r"[0-9a-f]{32}")
THUMBNAIL_SIDE = 320
# A 320-pixel JPEG is tens of kilobytes; anything far larger in the cache was not made here.
MAX_THUMBNAIL_BYTES = 4 * 1024 * 1024


def cached_thumbnail(path: Path) -> bytes | None:
    """A thumbnail the server made earlier: a regular file, not followed through a link."""
    try:
        return read_regular(path, MAX_THUMBNAIL_BYTES, follow=False)
    except ImageError:
        return None


def make_thumbnail(data: bytes, path: Path) -> bytes:
    """The thumbnail of an image's bytes, cached at `path`; ImageError if it cannot be."""
    out = io.BytesIO()
    open_image(data, THUMBNAIL_SIDE).save(out, format="JPEG", quality=85)
    with atomic_write(path) as tmp:
        tmp.write_bytes(out.getvalue())
    return out.getvalue()


def prune_thumbnails(folder: Path, client: QueryClient, chunk: int = 500) -> int:
    """Delete the cached thumbnails of images no longer in the collection, and anything in
    the cache the server did not make (links, other names). Returns how many went."""
    if not folder.is_dir():
        return 0
    gone = 0
    entries = list(folder.iterdir())
    made = [
        p
        for p in entries
        if p.suffix == ".jpg" and IMAGE_ID.fullmatch(p.stem) and not p.is_symlink() and p.is_file()
    ]
    strays = [p for p in entries if p not in made]
    for start in range(0, len(made), chunk):
        batch = made[start : start + chunk]
        try:
            known = client.known([p.stem for p in batch])
        except IndexerError as exc:
            log.warning("thumbnail cache not pruned: %s", exc)
            return gone
        strays += [p for p in batch if p.stem not in known]
    for path in strays:
        if path.name.startswith(".tmp-"):
            continue  # a thumbnail being written right now
        with contextlib.suppress(OSError):
            path.unlink()
            gone += 1
    return gone


class Verified:
    """Remembers which file states were checked to hold a record's bytes, so a cached
    thumbnail is served without reading the original again, but never after it changed."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[tuple[str, int, int, int, int], str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def key(path: Path) -> tuple[str, int, int, int, int] | None:
        try:
            st = os.stat(path)  # follows a link: a swapped target has another identity
        except OSError:
            return None
        return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def holds(self, key: tuple[str, int, int, int, int] | None, image_id: str) -> bool:
        with self._lock:
            return key is not None and self._seen.get(key) == image_id

    def add(self, key: tuple[str, int, int, int, int] | None, image_id: str) -> None:
        if key is None:
            return
        with self._lock:
            self._seen[key] = image_id
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
