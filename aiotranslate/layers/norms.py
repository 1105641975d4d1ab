"""Normalisation layers over the last axis: `LayerNorm` (GPT-2, BART, BERT) and `RMSNorm` (Llama
family, also Qwen3's per-head q/k norms).

Both can fuse the residual add of a pre-norm block: `norm(x, residual=h)` adds x into h in place and
normalises the sum (see `ops.layer_norm`). Parameters are float32 and read-only, shared by all threads.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from .linear import freeze


class LayerNorm:
    """(s - mean) / sqrt(var + eps) * gamma + beta."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray | None = None, eps: float = 1e-5):
        self.gamma = freeze(gamma)
        self.beta = None if beta is None else freeze(beta)
        self.eps = float(eps)

    def __call__(self, x, *, residual=None, out=None, n_threads=1) -> np.ndarray:
        return ops.layer_norm(
            x, self.gamma, self.beta, eps=self.eps, residual=residual, out=out, n_threads=n_threads
        )


class RMSNorm:
    """s / sqrt(mean(s^2) + eps) * gamma."""

    def __init__(self, gamma: np.ndarray, eps: float = 1e-6):
        self.gamma = freeze(gamma)
        self.eps = float(eps)

    def __call__(self, x, *, residual=None, out=None, n_threads=1) -> np.ndarray:
        return ops.rms_norm(x, self.gamma, eps=self.eps, residual=residual, out=out, n_threads=n_threads)
