"""Finding image files, identifying them by content, and preparing them for a model."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from indexer.errors import ImageError
from indexer.files import MAX_FILE_BYTES, read_regular_stat

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# Far above any garment photo, far below what would exhaust memory when decoded.
MAX_PIXELS = 100_000_000
# Longest side of the image every model is shown (INDEXER_IMAGE_MAX_SIDE).
MAX_SIDE = 768
# The formats decoded at all: those of EXTENSIONS (JPEG's opener also reads camera MPO
# files), whose headers state the size that decoding produces. Others are refused before
# any decoding: an ICNS file states 1024x1024 and may decode an embedded PNG of any size.
DECODED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


@dataclass(frozen=True)
class SourceImage:
    """A file read from disk: its path, its bytes and the id those bytes give it."""

    path: Path
    data: bytes
    size: int = 0  # the file's size and modification time when it was read
    mtime_ns: int = 0

    @cached_property
    def id(self) -> str:
        # Hashed once per file: the pipeline asks for the id many times.
        return content_id(self.data)


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for a model: upright, RGB, downscaled, encoded as JPEG."""

    id: str
    path: Path
    jpeg: bytes
    mime_type: str = "image/jpeg"
    size: int = 0  # of the source file, as read
    mtime_ns: int = 0
    likeness: str = ""  # the picture's fingerprint (likeness.py), for near-duplicates


def content_id(data: bytes) -> str:
    """Record id: the same bytes are one record wherever they live."""
    return hashlib.sha256(data).hexdigest()[:32]


def discover(paths: Iterable[Path], vanished_ok: bool = False) -> Iterator[Path]:
    """Yield image files under `paths`, recursively, in a stable order, one at a time. A
    path that does not exist is an error, or, with `vanished_ok` (paths a watcher saw come
    and go), skipped."""
    roots = list(dict.fromkeys(Path(p) for p in paths))
    folders = {r for r in roots if r.is_dir()}
    # A root inside another (a watcher's changed file with its folder) would be found twice;
    # only then is what was found remembered, so one big folder costs no memory for it.
    found: set[Path] | None = None
    if any(not folders.isdisjoint(r.parents) for r in roots):
        found = set()
    for root in roots:
        for path in _walk(root, vanished_ok):
            if found is not None:
                if path in found:
                    continue
                found.add(path)
            yield path


def _walk(root: Path, vanished_ok: bool) -> Iterator[Path]:
    if not root.is_dir():
        if not root.exists() and not root.is_symlink():
            if vanished_ok:
                return
            raise ImageError(f"{root}: no such file or directory")
        # A file named on the command line is read as given; read_regular refuses
        # FIFOs, devices and dangling links with a reason of their own.
        yield root
        return
    # os.walk does not follow directory symlinks, so a symlink loop cannot trap it.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in EXTENSIONS:
                yield Path(dirpath) / name


def display_path(path: Path) -> str:
    """The path as text that can be stored and printed, even if the name is not UTF-8."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return text


def read_source(path: Path, max_bytes: int = MAX_FILE_BYTES) -> SourceImage:
    if display_path(path) != str(path):
        # Records store paths as UTF-8 text; a name that is not would point nowhere.
        raise ImageError("file name is not valid UTF-8; rename the file to index it")
    data, info = read_regular_stat(path, max_bytes)
    if not data:
        raise ImageError("empty file (0 bytes)")
    return SourceImage(path, data, info.st_size, info.st_mtime_ns)


def reread(path: Path, image_id: str, max_side: int, max_bytes: int) -> PreparedImage | None:
    """The image at `path` prepared for a model, if the file still holds the bytes indexed
    as `image_id`; None when it changed, vanished or cannot be read any more."""
    try:
        source = read_source(path, max_bytes)
        return prepare(source, max_side) if source.id == image_id else None
    except ImageError:
        return None


def open_image(data: bytes, max_side: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode to an upright RGB image no larger than `max_side`; raise ImageError if unusable.

    The pixel count is checked from the header, before anything is decoded."""
    try:
        img: Image.Image = Image.open(io.BytesIO(data), formats=DECODED_FORMATS)
        width, height = img.size
        if width * height > max_pixels:
            raise ImageError(f"image too large to decode safely ({width}x{height} pixels)")
        img.seek(0)  # first frame of an animation
        # JPEG can decode at a fraction of full size, which saves most of the work.
        img.draft("RGB", (max_side, max_side))
        upright = _to_rgb(ImageOps.exif_transpose(img))
        img.close()
        img = upright
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not a recognised image format") from exc
    except Image.DecompressionBombError as exc:
        # Pillow refuses before decoding anything; its message names the pixel count.
        pixels = str(exc).split("(", 1)[-1].split(")", 1)[0]
        raise ImageError(
            f"image too large to decode safely ({pixels}; decompression bomb)"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        if "truncated" in str(exc).lower():
            raise ImageError("image data is truncated or corrupt") from exc
        raise ImageError(f"cannot decode image: {exc}") from exc
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        img.load()
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of letting convert() clip it.
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def prepare(source: SourceImage, max_side: int = MAX_SIDE) -> PreparedImage:
    """The one recipe from file bytes to model input: upright, RGB, no side over `max_side`,
    JPEG. Every model sees this: Gemini the JPEG, the local models `picture(prepared)`; and
    the local heads are trained on it (`train-tagger`, scripts/train_garment_head.py), so
    that they are trained on what they are shown."""
    from indexer import likeness

    img = open_image(source.data, max_side)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return PreparedImage(
        source.id,
        source.path,
        buf.getvalue(),
        size=source.size,
        mtime_ns=source.mtime_ns,
        likeness=likeness.encode(likeness.fingerprint(img)),
    )


def picture(image: PreparedImage) -> Image.Image:
    """What a local model sees of a prepared image: its JPEG, decoded."""
    return Image.open(io.BytesIO(image.jpeg)).convert("RGB")


def picture_of_file(
    path: Path, max_side: int = MAX_SIDE, max_bytes: int = MAX_FILE_BYTES
) -> Image.Image:
    """The recipe from a file to what a local model sees: read, prepare, decode."""
    return picture(prepare(read_source(path, max_bytes), max_side))
