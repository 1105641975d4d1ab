"""Position-wise feed-forward blocks: `FeedForward` down(act(up(x))) (GPT-2, BART, BERT, Marian) and
`GatedFeedForward` down(silu(gate(x)) * up(x)) (SwiGLU: Llama family), with gate and up fused in one
(2F, C) weight so the two projections are one GEMM and `ops.swiglu` combines the halves.

The residual add of the block is fused into the down projection (`residual=`), as in attention.
Widths come from the linears, so a tensor-parallel shard of up/gate and down needs no change here.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..ops.gemm import activation_code
from .linear import Linear


class FeedForward:
    def __init__(self, up: Linear, down: Linear, activation: str):
        activation_code(activation)  # unknown names fail at load time, not at the first call
        self.up, self.down, self.activation = up, down, activation

    def __call__(self, x, *, residual=None, n_threads=1) -> np.ndarray:
        """x (R, C) -> (R, C)."""
        hidden = self.up(x, activation=self.activation, n_threads=n_threads)  # (R, F)
        return self.down(hidden, residual=residual, n_threads=n_threads)


class GatedFeedForward:
    """gate_up (2F, C): gate rows first, then up rows (`Linear.fuse([gate, up])`); down (C, F)."""

    def __init__(self, gate_up: Linear, down: Linear):
        if gate_up.out_features % 2:
            raise ValueError(f"gate_up needs an even number of outputs, got {gate_up.out_features}")
        self.gate_up, self.down = gate_up, down

    def __call__(self, x, *, residual=None, n_threads=1) -> np.ndarray:
        """x (R, C) -> (R, C)."""
        hidden = ops.swiglu(self.gate_up(x, n_threads=n_threads), n_threads=n_threads)  # (R, 2F) -> (R, F)
        return self.down(hidden, residual=residual, n_threads=n_threads)
