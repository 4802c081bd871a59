"""Vector arithmetic the models and the keyword mapping share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unit_rows(rows: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero), as float32: cosine similarity
    is then a dot product, and Chroma stores float32 anyway."""
    m = np.asarray(rows, dtype=np.float32)
    if m.ndim == 1:
        m = m[None, :]
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1.0, norms)
