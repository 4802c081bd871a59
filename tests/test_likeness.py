"""Near-duplicates by pixels: a photo and its copies (re-encoded, resized, cropped a few
percent on any side, as PNG, brighter, recoloured, with a small logo) are near; different
photos are not; the blocked pair search finds exactly what comparing every pair finds."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance

from indexer import likeness


def photo(seed: int, size: tuple[int, int] = (300, 400)) -> Image.Image:
    """A picture with structure a hash can see: random shapes on a background."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x, y, x + rng.randrange(30, 150), y + rng.randrange(30, 150))
        draw.ellipse(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def logo(img: Image.Image) -> Image.Image:
    img = img.copy()
    ImageDraw.Draw(img).rectangle((250, 10, 290, 28), fill=(0, 0, 0))
    return img


COPIES = {
    "re-encoded": lambda img: jpeg(img, 35),
    "resized": lambda img: img.resize((150, 200)),
    "cropped": lambda img: img.crop((12, 0, 300, 388)),  # 4% left, 3% bottom
    "brighter": lambda img: ImageEnhance.Brightness(img).enhance(1.15),
    "recoloured": lambda img: ImageEnhance.Color(img).enhance(1.3),
    "logo": logo,
}


def near(a: Image.Image, b: Image.Image) -> int:
    rows = likeness.rows([likeness.fingerprint(a), likeness.fingerprint(b)])
    return int(likeness.distances(rows[:1], rows[1:])[0, 0])


@pytest.mark.parametrize("kind", sorted(COPIES))
def test_a_copy_is_near_its_original(kind: str) -> None:
    original = photo(1)
    assert near(original, COPIES[kind](original)) <= likeness.NEAR


def test_different_photos_are_not_near() -> None:
    found = [likeness.fingerprint(photo(seed)) for seed in range(40)]
    assert likeness.near_pairs(found) == []


def test_the_same_picture_in_another_colour_is_not_a_copy() -> None:
    """pHash reads brightness only: a red and a blue shirt photographed alike hash alike."""
    red = Image.new("RGB", (300, 400), (200, 30, 30))
    ImageDraw.Draw(red).ellipse((60, 80, 240, 330), fill=(120, 10, 10))
    blue = Image.merge("RGB", red.split()[::-1])  # the same shapes, red and blue swapped
    assert likeness.near_pairs([likeness.fingerprint(red), likeness.fingerprint(blue)]) == []
    assert len(likeness.near_pairs([likeness.fingerprint(red), likeness.fingerprint(red)])) == 1


def test_the_blocked_search_finds_every_pair_within_the_threshold() -> None:
    rng = random.Random(3)
    bits = 256
    found = [[rng.getrandbits(bits) for _ in likeness.WINDOWS] + [0x808080] for _ in range(100)]
    found += [[h ^ 0b1011 for h in f[:-1]] + [0x808080] for f in found[:50]]  # 3 bits off
    got = likeness.near_pairs(found, within=5, block=7)  # a ragged last block
    every = likeness.distances(likeness.rows(found), likeness.rows(found))
    brute = [
        (i, j, int(every[i, j])) for i in range(150) for j in range(i + 1, 150) if every[i, j] <= 5
    ]
    assert sorted(got) == brute and len(brute) >= 50


def test_a_stored_fingerprint_reads_back_and_a_damaged_one_is_none(tmp_path: Path) -> None:
    found = likeness.fingerprint(photo(2))
    assert likeness.decode(likeness.encode(found)) == found
    assert likeness.decode("") is None and likeness.decode("zz,11") is None
    assert likeness.decode(",".join(["0"] * len(likeness.WINDOWS))) is None  # one short
