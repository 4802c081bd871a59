"""EfficientNet-Lite2 features on real photos (needs the `local` extra and the dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.images import open_image, read_source

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from indexer.vision import FEATURE_DIM, ImageEncoder, to_input


def test_input_is_square_and_scaled() -> None:
    from PIL import Image

    arr = to_input(Image.new("RGB", (400, 300), (255, 0, 0)))
    assert arr.shape == (3, 260, 260)
    assert arr[0].max() <= 1.0 and arr[1].min() >= -1.0


def test_features_put_same_class_photos_closer(dataset: Path) -> None:
    shoes = sorted((dataset / "validation" / "shoes").glob("*.jpg"))[:4]
    dresses = sorted((dataset / "validation" / "dress").glob("*.jpg"))[:4]
    images = [open_image(read_source(p).data, 384) for p in shoes + dresses]
    feats = ImageEncoder().encode(images)
    assert feats.shape == (8, FEATURE_DIM)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    sims = feats @ feats.T
    within = (sims[:4, :4].sum() - 4) / 12 + (sims[4:, 4:].sum() - 4) / 12
    across = sims[:4, 4:].mean()
    assert within / 2 > across
