"""bfloat16 weights on a GPU (compute_type "bfloat16"): the device twins `to_device` puts in place
of `Linear` and `Embedding`, and `bf16_bits`, the host rounding that makes their weights.

CuPy has no bfloat16 dtype, so a bf16 matrix is a uint16 cupy array of bit patterns (the upper half
of each float32, rounded to nearest even): half the memory of float32. Activations stay float32:
`BF16DeviceLinear` rounds its input to bf16 on the device and multiplies through cuBLAS, summing
in float32 (`backends.cuda.bf16`); `BF16DeviceEmbedding` widens the gathered rows to float32.
Biases, norms and position tables stay float32 (`to_device`).

The twins have the call and the attributes the models use of the layers they replace (a linear's
`in_features`, `out_features`, `bias`; an embedding's `vocab_size`, `dim`, `scale`, `table`), so
the models run unchanged. What they are not: CPU layers (the CPU's bfloat16 is
`layers.quantized.BF16Linear`, with packed weights for the native kernels).
"""

from __future__ import annotations

import numpy as np

from ..backends import get_array_module
from ..layers.linear import WeightShape
from ..ops import _checks, _dispatch
from ..ops.gemm import linear_arguments
from ..ops.reference import bf16_round


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 values -> uint16 bfloat16 bit patterns, rounded to nearest even; a NaN stays a quiet
    NaN of the same sign (its float32 payload may lie in the low half, which rounding drops)."""
    a = np.asarray(a, dtype=np.float32)
    high = (bf16_round(a).view(np.uint32) >> 16).astype(np.uint16)
    return np.where(np.isnan(a), high | np.uint16(0x0040), high)


class BF16DeviceLinear(WeightShape):
    """y = act(bf16(x) @ W.T + bias) + residual for float32 cupy x (..., K); W (N, K) bf16 bits."""

    def __init__(self, weight, bias=None):
        self.weight = weight  # uint16 (N, K) on the device
        self.bias = bias  # float32 (N,) on the device, or None

    def __call__(self, x, *, activation=None, residual=None, out=None, n_threads=1):
        """x (..., K) -> (..., N), float32."""
        x = _checks.float_array(x, "x", dtype=np.float32)
        if isinstance(x, np.ndarray):
            raise TypeError("a bfloat16 device linear runs on the GPU: x must be a cupy array, got a numpy one")
        x2, bias, residual, out, out2, act = linear_arguments(x, self.weight.shape, self.bias, residual, out,
                                                              activation)  # fmt: skip
        _dispatch.kernels(x, None).bf16_linear(x2, self.weight, bias, act, residual, out2, n_threads)
        return out

    def __repr__(self) -> str:
        return f"BF16DeviceLinear({self.in_features} -> {self.out_features}, bias={self.bias is not None})"


class BF16DeviceEmbedding:
    """Rows of a (V, C) bf16 table picked by token ids, widened to float32, times `scale`."""

    def __init__(self, bits, scale: float = 1.0):
        self.bits = bits  # uint16 (V, C) on the device
        self.scale = float(scale)
        # The models take the namespace and dtype of their activations (KV caches, hidden states)
        # from `table` (DecoderOnlyModel.new_state). The rows are `bits`; the activations are float32
        # on this device, which an empty float32 array says without a copy (reading a row fails).
        self.table = get_array_module(bits).empty((0, bits.shape[1]), dtype=np.float32)

    @property
    def vocab_size(self) -> int:
        return self.bits.shape[0]

    @property
    def dim(self) -> int:
        return self.bits.shape[1]

    def __call__(self, ids, *, out=None, n_threads=1):
        """ids (...,) in [0, V) -> float32 (..., C); ids may be on the host."""
        ids = _checks.int_array(ids, "ids", self.bits)
        flat = ids.reshape(-1)
        bad = _checks.first_outside(flat, self.vocab_size)
        if bad is not None:
            raise ValueError(f"token id {bad} is out of range for a vocabulary of {self.vocab_size}")
        out = _checks.output(out, "out", ids.shape + (self.dim,), np.float32, self.bits)
        rows = out.reshape(flat.size, self.dim)
        _dispatch.kernels(self.bits, None).embedding_bf16(flat, self.bits, self.scale, rows, n_threads)
        return out

    def __repr__(self) -> str:
        return f"BF16DeviceEmbedding({self.vocab_size} x {self.dim}, scale={self.scale})"
