from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.errors import ConfigError
from indexer.tagger import LinearHead, train_head

pytest.importorskip("torch")  # training needs the local extra; prediction does not


def clusters(n: int, seed: int, centres_seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three noisy clusters on the unit sphere, like pooled image features of three classes."""
    centres = np.random.default_rng(centres_seed).normal(size=(3, 64))
    noise = np.random.default_rng(seed).normal(size=(n, 64))
    labels = [("dress", "hat", "shoes")[i % 3] for i in range(n)]
    x = np.stack([centres[i % 3] + 0.8 * noise[i] for i in range(n)])
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def test_trained_head_generalises_to_new_samples() -> None:
    x, y = clusters(300, seed=1)
    head = train_head("garment", x, y, "test-features")
    x_new, y_new = clusters(90, seed=2)  # unseen samples of the same classes
    accuracy = np.mean([p == t for p, t in zip(head.predict(x_new), y_new, strict=True)])
    assert accuracy > 0.95
    assert head.classes == ("dress", "hat", "shoes")
    assert np.allclose(head.probabilities(x_new).sum(axis=1), 1.0, atol=1e-5)


def test_training_is_deterministic() -> None:
    x, y = clusters(90, seed=3)
    first = train_head("garment", x, y, "test-features")
    second = train_head("garment", x, y, "test-features")
    assert np.array_equal(first.weights, second.weights)


def test_low_confidence_predictions_are_withheld() -> None:
    x, y = clusters(120, seed=4)
    head = train_head("garment", x, y, "test-features")
    middle = np.full((1, 64), 1 / 8.0)  # equidistant from nothing in particular
    # At one threshold the clear cases keep their answers and only the unclear one loses it.
    assert head.predict(x, min_confidence=0.6) == y
    assert head.predict(middle, min_confidence=0.6) == [None]
    assert head.predict(middle) != [None]  # without a threshold it answers all the same


def test_head_round_trips_through_a_file(tmp_path: Path) -> None:
    x, y = clusters(60, seed=5)
    head = train_head("season", x, y, "test-features")
    head.save(tmp_path / "season.npz")
    loaded = LinearHead.load(tmp_path / "season.npz")
    assert loaded.facet == "season" and loaded.feature_model == "test-features"
    assert loaded.predict(x) == head.predict(x)


def test_training_needs_two_keywords_and_files_must_be_heads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least two"):
        train_head("garment", np.ones((3, 4)), ["dress"] * 3, "f")
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="cannot read tagger head"):
        LinearHead.load(tmp_path / "bad.npz")
    # a head cut short (a copy interrupted): numpy raises zipfile's own error, not OSError
    head = train_head("garment", np.eye(4), ["dress", "hat"] * 2, "f")
    head.save(tmp_path / "whole.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"cannot read tagger head .*cut\.npz"):
        LinearHead.load(tmp_path / "cut.npz")


@pytest.mark.parametrize(
    "classes, weights, bias",
    [
        ([], np.zeros((4, 0)), np.zeros(0)),  # no keyword: 3 / len(classes) divided by zero
        (["dress"], np.zeros((4, 1)), np.zeros(1)),
        (["dress", "hat"], np.zeros((4, 3)), np.zeros(2)),
        (["dress", "hat"], np.zeros((4, 2)), np.zeros(5)),
    ],
)
def test_a_malformed_head_file_is_refused_when_loaded(
    tmp_path: Path, classes: list[str], weights: np.ndarray, bias: np.ndarray
) -> None:
    path = tmp_path / "garment.npz"
    np.savez(
        path,
        facet="garment",
        classes=np.array(classes, dtype=str),
        weights=weights,
        bias=bias,
        feature_model="efficientnet-lite2",
    )
    with pytest.raises(ConfigError, match="cannot read tagger head"):
        LinearHead.load(path)
