"""`Linear`: y = act(x @ W.T + b) + residual, the one place where layers touch a weight matrix.

Design: layers and models only *call* a linear (`lin(x, activation=, residual=, out=, n_threads=)`)
and read `in_features` / `out_features`; they never read its weight. So another object with the same
call and the same two sizes can replace it after loading without any change to the models:
- an int8 linear holding a per-output-row quantized weight and its scales;
- a tensor-parallel shard: a column-parallel linear is a plain `Linear` over a slice of the rows
  (attention and feed-forward derive their head count and width from `out_features`); a row-parallel
  one computes its partial product, all-reduces it, then adds bias and `residual` once, which is why
  the residual add is an argument of the call rather than a `+` in the model.

What it is not: no quantization or parallelism lives here; those are passes over a loaded model
(`layers.quantized.quantize_model`, `runtime.tensor_parallel`). A checkpoint that stores a weight in
int8 (Bergamot's intgemm8) hands those values over as `int8`, so the int8 pass uses them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import ops


def freeze(a: np.ndarray) -> np.ndarray:
    if isinstance(a, np.ndarray):  # device arrays have no read-only flag
        a.flags.writeable = False  # weights are shared by every worker thread: never written
    return a


class WeightShape:
    """in_features and out_features of a linear layer whose `weight` has shape (N, K)."""

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]


class Linear(WeightShape):
    """A dense float32 layer: weight (N, K) as torch.nn.Linear stores it, optional bias (N,).

    int8: the weight as the checkpoint stores it in int8, (values int8 (N, K), scales) with scales (N,)
    per row (weight = scales[:, None] * values: Bergamot) or (N, K/32) per block of 32 along K
    (GGUF Q8_0); None when it stores floats."""

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        int8: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        if weight.ndim != 2 or weight.dtype != np.float32 or not weight.flags.c_contiguous:
            raise ValueError(f"weight must be a C-contiguous float32 (N, K) array, got {weight.dtype} {weight.shape}")
        if bias is not None and (bias.shape != weight.shape[:1] or bias.dtype != np.float32):
            raise ValueError(f"bias must be float32 ({weight.shape[0]},), got {bias.dtype} {bias.shape}")
        if int8 is not None and (int8[0].shape != weight.shape or int8[1].shape[:1] != weight.shape[:1]):
            raise ValueError(f"int8 values must be {weight.shape} and scales have {weight.shape[0]} rows")
        self.weight = freeze(weight)
        self.bias = None if bias is None else freeze(bias)
        self.int8 = int8

    @classmethod
    def fuse(cls, parts: Sequence[Linear]) -> Linear:
        """One linear whose output is the parts' outputs side by side (fused QKV, gate+up): one GEMM
        instead of several. Parts must all have a bias or none."""
        if len({p.bias is None for p in parts}) != 1:
            raise ValueError("fused linears must all have a bias or none")
        weight = np.concatenate([p.weight for p in parts])
        bias = None if parts[0].bias is None else np.concatenate([p.bias for p in parts])
        int8 = None
        if all(p.int8 is not None for p in parts):
            int8 = tuple(np.concatenate([p.int8[i] for p in parts]) for i in range(2))
        return cls(weight, bias, int8=int8)

    def select(self, rows: np.ndarray) -> Linear:
        """The linear computing only output columns `rows` (a vocabulary shortlist)."""
        bias = None if self.bias is None else self.bias[rows]
        int8 = None if self.int8 is None else (self.int8[0][rows], self.int8[1][rows])
        return Linear(self.weight[rows], bias, int8=int8)

    def __call__(self, x, *, activation=None, residual=None, out=None, n_threads=1) -> np.ndarray:
        """x (..., K) -> (..., N)."""
        return ops.linear(
            x, self.weight, self.bias, activation=activation, residual=residual, out=out, n_threads=n_threads
        )

    def __repr__(self) -> str:
        return f"Linear({self.in_features} -> {self.out_features}, bias={self.bias is not None})"
