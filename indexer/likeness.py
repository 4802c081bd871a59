"""Whether two pictures are the same photo after a copy's usual changes, by pixels alone: a
re-encode, a resize, a format change, a small brightness or colour change, a small overlay
such as a logo, or a crop of a few percent a side. It works the same whatever the provider.

A picture's fingerprint is the perceptual hash (imagehash's DCT pHash, 64 bits) of the whole
picture and of ten windows a few percent smaller: centred, and with one side or one corner's
two sides cut, and its mean colour. A crop of the original then matches one of its windows,
so two pictures are near when the whole of either is within NEAR bits of some window of the
other, and their mean colours are within COLOUR_NEAR a channel: pHash reads brightness only,
and a shop's red and blue shirt photographed alike hash alike. Different photos of similar
garments stay further apart than that (`scripts/bench_likeness.py` measures both sides).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# Fractions cut from the left, top, right and bottom; the whole picture first.
_CUT = 0.05
WINDOWS = (
    (0.0, 0.0, 0.0, 0.0),
    (0.03, 0.03, 0.03, 0.03),
    (0.06, 0.06, 0.06, 0.06),
    (_CUT, 0, 0, 0),
    (0, _CUT, 0, 0),
    (0, 0, _CUT, 0),
    (0, 0, 0, _CUT),
    (_CUT, _CUT, 0, 0),
    (0, _CUT, _CUT, 0),
    (0, 0, _CUT, _CUT),
    (_CUT, 0, 0, _CUT),
)
NEAR = 8  # bits of 64: at most this far apart is the same photo
COLOUR_NEAR = 40  # of 255, on each channel of the mean colour
_SIDE = 256  # hashed from a thumbnail: the hash reads 32x32 pixels anyway
_BLOCK = 64  # rows compared at once: their XORs take _BLOCK * n * 88 bytes


def fingerprint(picture: Image.Image) -> list[int]:
    """The pHash of the whole picture and of each window, as unsigned 64-bit integers, and
    the picture's mean colour as 0xRRGGBB."""
    import imagehash

    small = picture.convert("RGB")
    small.thumbnail((_SIDE, _SIDE))
    width, height = small.size
    found = []
    for left, top, right, bottom in WINDOWS:
        box = (
            round(width * left),
            round(height * top),
            width - round(width * right),
            height - round(height * bottom),
        )
        found.append(int(str(imagehash.phash(small.crop(box))), 16))
    red, green, blue = (round(c) for c in np.asarray(small, dtype=np.float64).mean(axis=(0, 1)))
    return [*found, (red << 16) | (green << 8) | blue]


def encode(found: Sequence[int]) -> str:
    """A fingerprint as stored: hex words joined by commas."""
    return ",".join(f"{word:016x}" for word in found)


def decode(text: str) -> list[int] | None:
    """A stored fingerprint, or None when it is missing or not one."""
    try:
        words = [int(word, 16) for word in text.split(",")]
    except (AttributeError, ValueError):
        return None
    return words if len(words) == len(WINDOWS) + 1 else None


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far each fingerprint of `a` is from each of `b` (rows of fingerprints): the
    fewest differing bits between the whole of one and any window of the other."""
    a, b = a[:, : len(WINDOWS)], b[:, : len(WINDOWS)]
    whole_a = np.bitwise_count(a[:, None, :1] ^ b[None, :, :]).min(axis=2)
    whole_b = np.bitwise_count(a[:, None, :] ^ b[None, :, None, 0]).min(axis=2)
    return np.minimum(whole_a, whole_b)


def near_pairs(
    found: Sequence[Sequence[int]], within: int = NEAR, block: int = _BLOCK
) -> list[tuple[int, int, int]]:
    """(i, j, bits) for every pair of fingerprints i < j within `within` bits, compared
    `block` rows at a time."""
    rows = np.asarray(found, dtype=np.uint64).reshape(-1, len(WINDOWS) + 1)
    colours = np.stack(
        [(rows[:, -1] >> np.uint64(shift)) & np.uint64(255) for shift in (16, 8, 0)], axis=1
    ).astype(np.int16)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(rows), block):
        apart = distances(rows[start : start + block], rows[start:])
        for i, j in zip(*np.nonzero(apart <= within), strict=True):
            a, b = start + int(i), start + int(j)
            if a < b and np.abs(colours[a] - colours[b]).max() <= COLOUR_NEAR:
                pairs.append((a, b, int(apart[i, j])))
    return pairs
