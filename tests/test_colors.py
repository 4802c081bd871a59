from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from indexer.colors import dominant_color
from indexer.vocabulary import Vocabulary

COLORS = Vocabulary.load().facets["color"]


def photo(
    garment: tuple[int, int, int], background: tuple[int, int, int], share: float, seed: int = 0
) -> Image.Image:
    """A garment-shaped blob covering `share` of a noisy, textured background."""
    rng = np.random.default_rng(seed)
    w, h = 400, 500
    noise = rng.normal(0, 12, (h, w, 3))
    img = Image.fromarray(np.clip(np.array(background) + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for y in range(0, h, 40):  # floorboards
        draw.line([(0, y), (w, y)], fill=tuple(max(0, c - 40) for c in background), width=3)
    side = np.sqrt(share)
    bw, bh = w * side, h * side
    x0, y0 = (w - bw) / 2, (h - bh) / 2
    draw.rounded_rectangle([x0, y0, x0 + bw, y0 + bh], radius=30, fill=garment)
    draw.polygon([(x0, y0), (x0 - 40, y0 + 80), (x0, y0 + 100)], fill=garment)  # sleeve
    return img


def test_red_garment_on_a_wooden_floor_is_red() -> None:
    assert dominant_color(photo((200, 25, 35), (150, 105, 60), 0.35), COLORS) == "red"


def test_the_garment_wins_over_a_larger_background() -> None:
    # The white sheet covers three quarters of the frame; the shirt is still blue.
    assert dominant_color(photo((40, 70, 180), (240, 240, 235), 0.25), COLORS) == "blue"
    # And a white shirt on a dark floor is white.
    assert dominant_color(photo((245, 245, 245), (60, 45, 35), 0.3), COLORS) == "white"


def test_shades_take_the_vocabulary_name() -> None:
    assert dominant_color(photo((25, 35, 85), (230, 230, 230), 0.35), COLORS) == "blue"  # navy
    assert dominant_color(photo((115, 40, 125), (230, 230, 230), 0.35), COLORS) == "violet"


def test_colours_outside_the_vocabulary_are_not_guessed() -> None:
    pink = photo((240, 150, 180), (60, 60, 60), 0.35)
    assert dominant_color(pink, COLORS) is None
    red = photo((200, 25, 35), (60, 60, 60), 0.35)
    assert dominant_color(red, ["blue", "green"]) is None
    assert dominant_color(red, ["Red", "blue"]) == "Red"  # the vocabulary's spelling
