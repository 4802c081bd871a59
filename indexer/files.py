"""Reading and writing files that others may control: regular files only, sizes capped,
writes atomic and never through a symbolic link."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer.errors import ImageError

# Far above any photo; a file larger than this is refused before it is read whole.
MAX_FILE_BYTES = 200 * 1024 * 1024
_READ_CHUNK = 1024 * 1024


def absolute(path: Path | str) -> Path:
    """`path` made absolute with `.` and `..` resolved as written (symbolic links kept), so
    a record's path names the file the same way whichever folder the command ran in."""
    return Path(os.path.abspath(path))


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: Path, max_bytes: int = MAX_FILE_BYTES, follow: bool = True) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or ImageError saying why not."""
    return read_regular_stat(path, max_bytes, follow)[0]


def read_regular_stat(
    path: Path, max_bytes: int = MAX_FILE_BYTES, follow: bool = True
) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most `max_bytes`, and the file's stat taken on the
    descriptor they were read through; or ImageError saying why not. With `follow` False, a
    symbolic link at `path` itself is refused rather than followed.

    Opened without blocking, so a FIFO cannot hang the caller, and checked on the open
    descriptor, so a file swapped for a device or a folder between a check and the read is
    still caught (and the descriptor closed: a folder opens, but cannot be read).
    The cap is enforced while reading: a file that grows, or lies about its size, is cut off.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise ImageError("broken symbolic link (its target does not exist)") from exc
        raise ImageError("file does not exist") from exc
    except OSError as exc:
        if not follow and os.path.islink(path):
            raise ImageError("a symbolic link; not followed here") from exc
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"not a regular file ({_kind(info.st_mode)}); only files are read")
        if info.st_size > max_bytes:
            raise ImageError(f"file too large ({info.st_size} bytes; the limit is {max_bytes})")
        fh = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with fh:
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := fh.read(min(_READ_CHUNK, max_bytes + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise ImageError(f"file too large (more than {max_bytes} bytes)")
        except OSError as exc:
            raise ImageError(f"cannot read file: {exc.strerror or exc}") from exc
    return b"".join(chunks), info


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    Readers never see a half-written file, and a symbolic link at `path` is replaced, not
    written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
