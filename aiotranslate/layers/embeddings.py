"""`Embedding`: rows of a (V, C) table picked by token ids, times an optional scale (sqrt(C) in
Marian/BART-style models). Also serves token-type embeddings (BERT) and tied output projections,
whose `Linear` reads the same read-only table."""

from __future__ import annotations

import numpy as np

from .. import ops
from .linear import freeze


class Embedding:
    def __init__(self, table: np.ndarray, scale: float = 1.0):
        if table.ndim != 2 or table.dtype != np.float32:
            raise ValueError(f"table must be float32 (V, C), got {table.dtype} {table.shape}")
        self.table = freeze(table)
        self.scale = float(scale)

    @property
    def vocab_size(self) -> int:
        return self.table.shape[0]

    @property
    def dim(self) -> int:
        return self.table.shape[1]

    def __call__(self, ids, *, out=None, n_threads=1) -> np.ndarray:
        """ids (...,) in [0, V) -> (..., C)."""
        return ops.embedding(ids, self.table, scale=self.scale, out=out, n_threads=n_threads)
