"""Linear classifier heads over image features: one per facet, small enough to ship.

A head maps a unit-length image feature vector to one keyword of its facet. Training is
multinomial logistic regression with L2 and label smoothing, fitted by torch's L-BFGS: on a
few thousand 1280-d vectors it takes seconds on a CPU. Prediction needs only numpy.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.errors import ConfigError
from indexer.files import MAX_FILE_BYTES, atomic_write
from indexer.images import MAX_SIDE
from indexer.vocabulary import Vocabulary

if TYPE_CHECKING:
    from indexer.vision import ImageEncoder


@dataclass(frozen=True)
class LinearHead:
    facet: str
    classes: tuple[str, ...]
    weights: np.ndarray  # (feature_dim, classes)
    bias: np.ndarray  # (classes,)
    feature_model: str

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return _softmax(features @ self.weights + self.bias)

    def predict(self, features: np.ndarray, min_confidence: float = 0.0) -> list[str | None]:
        """The most likely keyword per row, or None where the head is not confident enough."""
        probs = self.probabilities(features)
        best = probs.argmax(axis=1)
        return [
            self.classes[i] if probs[row, i] >= min_confidence else None
            for row, i in enumerate(best)
        ]

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            facet=self.facet,
            classes=np.array(self.classes),
            weights=self.weights,
            bias=self.bias,
            feature_model=self.feature_model,
        )

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        try:
            with np.load(path, allow_pickle=False) as data:
                head = cls(
                    facet=str(data["facet"]),
                    classes=tuple(str(c) for c in data["classes"]),
                    weights=data["weights"].astype(np.float32),
                    bias=data["bias"].astype(np.float32),
                    feature_model=str(data["feature_model"]),
                )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"cannot read tagger head {path}: {exc}") from exc
        # A file in the heads folder is anyone's: one with no classes, or shapes that do not
        # agree, would fail later mid-run with a bare numpy error (or a division by zero).
        n = len(head.classes)
        if n < 2 or head.weights.ndim != 2 or head.weights.shape[1] != n or head.bias.shape != (n,):
            raise ConfigError(
                f"cannot read tagger head {path}: {n} keywords, weights {head.weights.shape}, "
                f"bias {head.bias.shape}"
            )
        return head


_INPUT_SCALE = 10.0


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_head(
    facet: str,
    features: np.ndarray,
    labels: Sequence[str],
    feature_model: str,
    *,
    l2: float = 3e-3,
    label_smoothing: float = 0.1,
    max_iterations: int = 500,
    balance: float = 0.0,
) -> LinearHead:
    """Fit a linear head by full-batch L-BFGS on the smoothed cross-entropy.

    Full batch makes training deterministic. Defaults were picked by 5-fold cross-validation
    on the training photos (scripts/train_garment_head.py), never on held-out ones.
    `balance` weighs each class by the inverse of its count raised to that power: 0 keeps
    the catalog's priors, 1 makes every class count alike (which, with a few photos of a
    rare type, pulls common ones into it), 0.5 is between.
    """
    import torch

    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise ConfigError(f"facet {facet!r} needs examples of at least two keywords")
    index = {c: i for i, c in enumerate(classes)}
    # Unit-length features give tiny logits; a fixed input scale keeps l2 comparable.
    x = torch.as_tensor(np.asarray(features, dtype=np.float32) * _INPUT_SCALE)
    y = torch.as_tensor([index[label] for label in labels])
    torch.manual_seed(0)
    layer = torch.nn.Linear(x.shape[1], len(classes))
    optimiser = torch.optim.LBFGS(
        layer.parameters(),
        max_iter=max_iterations,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    class_weights = None
    if balance:
        counts = torch.bincount(y, minlength=len(classes)).float()
        class_weights = (counts.sum() / (len(classes) * counts.clamp(min=1))) ** balance

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = (
            torch.nn.functional.cross_entropy(
                layer(x), y, weight=class_weights, label_smoothing=label_smoothing
            )
            + l2 * layer.weight.pow(2).sum()
        )
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        weights = (_INPUT_SCALE * layer.weight.T).numpy().astype(np.float32)
        bias = layer.bias.numpy().astype(np.float32)
    return LinearHead(facet, classes, weights, bias, feature_model)


@dataclass(frozen=True)
class TrainingReport:
    facet: str
    counts: dict[str, int]
    holdout_accuracy: float | None  # None when there were too few photos to hold some out
    path: Path


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def labelled_photos(root: Path, vocabulary: Vocabulary) -> dict[str, list[tuple[Path, str]]]:
    """`root/<facet>/<keyword>/*` -> facet -> [(photo, keyword)], checked against the vocabulary."""
    from indexer.images import discover

    found: dict[str, list[tuple[Path, str]]] = {}
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder of <facet>/<keyword>/ photos")
    # Hidden folders (.thumbnails, .git, a photo manager's cache) are no labels.
    for facet_dir in sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p)):
        facet = facet_dir.name
        if facet not in vocabulary.facets:
            raise ConfigError(
                f"folder {facet!r} is not a facet; facets are: {', '.join(vocabulary.facets)}"
            )
        for keyword_dir in sorted(p for p in facet_dir.iterdir() if p.is_dir() and not _hidden(p)):
            keyword = vocabulary.canonical(facet, keyword_dir.name)
            if keyword is None:
                allowed = ", ".join(vocabulary.facets[facet])
                raise ConfigError(
                    f"folder {facet}/{keyword_dir.name} is not a {facet} keyword; "
                    f"allowed: {allowed}"
                )
            found.setdefault(facet, []).extend((p, keyword) for p in discover([keyword_dir]))
    if not found:
        raise ConfigError(f"no labelled photos under {root} (expected <facet>/<keyword>/*.jpg)")
    return found


def train_heads(
    root: Path,
    vocabulary: Vocabulary,
    out_dir: Path,
    encoder: ImageEncoder,
    max_bytes: int = MAX_FILE_BYTES,
    skipped: list[tuple[Path, str]] | None = None,
    max_side: int = MAX_SIDE,
) -> list[TrainingReport]:
    """Train and save one head per facet folder under `root`; report a holdout accuracy.
    Files that cannot be read are left out and listed in `skipped` with their reason."""
    from indexer.vision import MODEL_ID, encode_files

    out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for facet, items in labelled_photos(root, vocabulary).items():
        bad: list[tuple[Path, str]] = []
        features = encode_files(
            encoder, [p for p, _ in items], max_bytes=max_bytes, skipped=bad, max_side=max_side
        )
        left_out = {p for p, _ in bad}
        labels = [k for p, k in items if p not in left_out]
        if skipped is not None:
            skipped.extend(bad)
        if not labels:
            continue
        counts = {k: labels.count(k) for k in sorted(set(labels))}
        accuracy = None
        if len(counts) >= 2 and min(counts.values()) >= 5:
            # Every fifth photo of each keyword is held out once to estimate accuracy.
            rank = {k: 0 for k in counts}
            held = []
            for label in labels:
                held.append(rank[label] % 5 == 4)
                rank[label] += 1
            mask = np.array(held)
            probe = train_head(
                facet,
                features[~mask],
                [x for x, h in zip(labels, held, strict=True) if not h],
                MODEL_ID,
            )
            truth = [x for x, h in zip(labels, held, strict=True) if h]
            accuracy = float(
                np.mean([p == t for p, t in zip(probe.predict(features[mask]), truth, strict=True)])
            )
        head = train_head(facet, features, labels, MODEL_ID)
        path = out_dir / f"{facet}.npz"
        with atomic_write(path) as tmp:  # a link at `path` is replaced, never written through
            head.save(tmp)
        reports.append(TrainingReport(facet, counts, accuracy, path))
    return reports
