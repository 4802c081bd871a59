"""Whether two pictures are the same photo after a copy's usual changes, by pixels alone: a
re-encode, a resize, a format change, a small brightness or colour change, a small overlay
such as a logo, or a crop of a few percent a side. It works the same whatever the provider.

A picture's fingerprint is the perceptual hash (imagehash's DCT pHash at 16x16, 256 bits) of
the whole picture and of ten windows a few percent smaller: centred, and with one side or one
corner's two sides cut, and its mean colour. A crop of the original then matches one of its
windows, so two pictures are near when the whole of either is within NEAR bits of some window
of the other, and their mean colours are within COLOUR_NEAR a channel: pHash reads
brightness only, and a shop's red and blue shirt photographed alike hash alike. The 256-bit
hash, not the common 64-bit one, because two pairs of jeans hung on the same hanger were 8
bits apart in 64, as close as a cropped copy; in 256 they are 90 apart and the copies at most
50 (`scripts/bench_likeness.py` measures both sides).
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
HASH_SIZE = 16  # a 16x16 pHash: 256 bits
WORDS = HASH_SIZE * HASH_SIZE // 64  # uint64 words a hash
NEAR = 52  # bits of 256: at most this far apart is the same photo
COLOUR_NEAR = 40  # of 255, on each channel of the mean colour
_SIDE = 256  # hashed from a thumbnail: the hash reads 64x64 pixels anyway
_BLOCK = 32  # rows compared at once: their XORs take _BLOCK * n * 352 bytes


def fingerprint(picture: Image.Image) -> list[int]:
    """The pHash of the whole picture and of each window (256-bit integers), and the
    picture's mean colour as 0xRRGGBB."""
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
        found.append(int(str(imagehash.phash(small.crop(box), hash_size=HASH_SIZE)), 16))
    red, green, blue = (round(c) for c in np.asarray(small, dtype=np.float64).mean(axis=(0, 1)))
    return [*found, (red << 16) | (green << 8) | blue]


def encode(found: Sequence[int]) -> str:
    """A fingerprint as stored: the hashes in hex, then the colour, joined by commas."""
    hashes = [f"{word:0{HASH_SIZE * HASH_SIZE // 4}x}" for word in found[:-1]]
    return ",".join([*hashes, f"{found[-1]:06x}"])


def decode(text: str) -> list[int] | None:
    """A stored fingerprint, or None when it is missing or not one."""
    try:
        words = [int(word, 16) for word in text.split(",")]
    except (AttributeError, ValueError):
        return None
    return words if len(words) == len(WINDOWS) + 1 else None


def rows(found: Sequence[Sequence[int]]) -> np.ndarray:
    """Fingerprints as an array (n, len(WINDOWS), WORDS) of uint64, and their colours."""
    mask = (1 << 64) - 1
    return np.array(
        [[[(h >> (64 * k)) & mask for k in range(WORDS)] for h in f[:-1]] for f in found],
        dtype=np.uint64,
    ).reshape(-1, len(WINDOWS), WORDS)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far each fingerprint of `a` is from each of `b` (as `rows` makes them): the
    fewest differing bits between the whole of one and any window of the other."""
    whole_a = np.bitwise_count(a[:, None, :1, :] ^ b[None, :, :, :]).sum(axis=-1).min(axis=-1)
    whole_b = np.bitwise_count(a[:, None, :, :] ^ b[None, :, :1, :]).sum(axis=-1).min(axis=-1)
    return np.minimum(whole_a, whole_b)


def near_pairs(
    found: Sequence[Sequence[int]], within: int = NEAR, block: int = _BLOCK
) -> list[tuple[int, int, int]]:
    """(i, j, bits) for every pair of fingerprints i < j within `within` bits and alike in
    colour, compared `block` rows at a time."""
    hashed = rows(found)
    colours = np.array([[(f[-1] >> s) & 255 for s in (16, 8, 0)] for f in found], dtype=np.int16)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(hashed), block):
        apart = distances(hashed[start : start + block], hashed[start:])
        for i, j in zip(*np.nonzero(apart <= within), strict=True):
            a, b = start + int(i), start + int(j)
            if a < b and np.abs(colours[a] - colours[b]).max() <= COLOUR_NEAR:
                pairs.append((a, b, int(apart[i, j])))
    return pairs
