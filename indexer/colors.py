"""The garment's dominant colour from its pixels, named with the vocabulary's colours.

Photos of garments are taken on beds, floors and hangers, so the most common colour of a
photo is often the background's. The background is estimated from the border of the frame;
pixels that resemble it are discounted, central pixels count more, and each remaining pixel
votes for its nearest reference colour in CIELAB. A winning colour that the vocabulary does
not list (brown, grey, pink, ...) yields no colour: never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

# Reference colours, sRGB. More names than the default vocabulary has, so that a brown coat
# is recognised as brown (and left untagged) rather than forced to "orange".
REFERENCE = {
    "red": (200, 30, 40),
    "orange": (240, 130, 30),
    "yellow": (240, 215, 50),
    "green": (40, 140, 60),
    "blue": (40, 80, 190),
    "navy": (25, 35, 80),
    "violet": (130, 60, 170),
    "purple": (110, 40, 120),
    "pink": (240, 150, 180),
    "brown": (120, 80, 50),
    "beige": (215, 195, 160),
    "grey": (128, 128, 128),
    "black": (20, 20, 22),
    "white": (245, 245, 245),
    # shades that carry a vocabulary colour's name
    "denim": (70, 95, 140),
    "light blue": (150, 180, 220),
    "burgundy": (120, 25, 40),
    "mustard": (205, 165, 40),
    "olive": (100, 110, 50),
    "off-white": (225, 222, 210),
}
# Names that mean a vocabulary colour for tagging purposes.
ALIASES = {
    "navy": "blue",
    "denim": "blue",
    "light blue": "blue",
    "purple": "violet",
    "burgundy": "red",
    "mustard": "yellow",
    "olive": "green",
    "off-white": "white",
}
SIDE = 96


def _lab(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array(
        [[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]]
    )
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


_NAMES = list(REFERENCE)
_REF_LAB = _lab(np.array([REFERENCE[n] for n in _NAMES], dtype=np.float64))
_REF_NORM = (_REF_LAB**2).sum(axis=1)


def _nearest(lab: np.ndarray) -> np.ndarray:
    """Index of each Lab row's nearest reference colour. |a-r|^2 = |a|^2 - 2a.r + |r|^2, and
    |a|^2 is the same for every r: one small matrix product, not an (n, refs, 3) array (the
    colour vote had been a sixth of an offline run's CPU time)."""
    return np.argmin(_REF_NORM - 2.0 * (lab @ _REF_LAB.T), axis=1)


def dominant_color(img: Image.Image, allowed: Iterable[str]) -> str | None:
    """The garment's colour among `allowed` (vocabulary spellings), or None."""
    allowed_by_fold = {a.casefold(): a for a in allowed}
    small = img.convert("RGB")
    small.thumbnail((SIDE, SIDE))
    lab = _lab(np.asarray(small)).reshape(-1, 3)
    h, w = small.size[1], small.size[0]
    weights = _centre_weights(h, w) * _foreground_weights(lab, h, w)
    if weights.sum() <= 0:
        return None
    nearest = _nearest(lab)
    votes = np.bincount(nearest, weights=weights, minlength=len(_NAMES))
    winner = _NAMES[int(np.argmax(votes))]
    name = ALIASES.get(winner, winner)
    return allowed_by_fold.get(name)


def _centre_weights(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    d2 = ((ys - (h - 1) / 2) / (0.35 * h)) ** 2 + ((xs - (w - 1) / 2) / (0.35 * w)) ** 2
    return np.exp(-0.5 * d2).reshape(-1)


def _foreground_weights(lab: np.ndarray, h: int, w: int) -> np.ndarray:
    """Down-weight pixels close to the colours that dominate the frame's border."""
    grid = lab.reshape(h, w, 3)
    band = max(1, round(0.08 * min(h, w)))
    border = np.concatenate(
        [
            grid[:band].reshape(-1, 3),
            grid[-band:].reshape(-1, 3),
            grid[:, :band].reshape(-1, 3),
            grid[:, -band:].reshape(-1, 3),
        ]
    )
    # A few background colours: the border's pixels grouped by their nearest reference.
    near = _nearest(border)
    counts = np.bincount(near, minlength=len(_NAMES))
    weights = np.ones(len(lab))
    for ref in np.flatnonzero(counts >= 0.2 * len(border)):
        centre = np.median(border[near == ref], axis=0)
        dist = np.sqrt(((lab - centre) ** 2).sum(axis=1))
        weights *= np.clip(dist / 25.0, 0.0, 1.0)  # within ~25 Lab units: background
    return weights
