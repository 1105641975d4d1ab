"""Scaled dot-product attention in one op: softmax(scale * q k^T, masked) v over groups of queries.

The kernel is `native/attention.pxi`, part of the `_gemm` module (float32 on the host): scores stay
in per-thread scratch and only the keys some query sees are read. An additive mask or the
probabilities asked back (alignments of cross-attention), float64, CuPy arrays, or a missing
extension run the same math as three ops (batched_matmul, softmax, batched_matmul), which have
their own kernels there. The contract is `reference.attention`.
"""

from __future__ import annotations

import numpy as np

from .. import _native
from . import _checks, _dispatch
from .gemm import batched_matmul
from .softmax import softmax

_kernels = _native.load("_gemm")


def attention(q, k, v, *, scale, lengths=None, causal_q=0, mask=None, out=None, probs_out=None, n_threads=1):
    """softmax(scale * q @ k^T, masked) @ v for q (G, M, D), k and v (G, N, D) -> (G, M, D).

    The scores (G*M, N) are masked as `ops.softmax` masks its rows with lengths, causal_q and the
    additive mask; probs_out (G, M, N), if given, receives the probabilities. q, k and v may be
    strided views whose last axis is contiguous (KV-cache slices): no copy is made."""
    if (_kernels is not None and mask is None and probs_out is None and out is None and type(q) is np.ndarray
            and q.ndim == 3):
        try:  # the short way (`_dispatch`)
            return _kernels.attention(q, k, v, None, scale, lengths, causal_q, n_threads)
        except _dispatch.REFUSED:
            pass
    q = _checks.float_array(q, "q", strided_rows=True)
    k = _checks.float_array(k, "k", q, strided_rows=True)
    v = _checks.float_array(v, "v", q, strided_rows=True)
    for x, name in ((q, "q"), (k, "k"), (v, "v")):
        _checks.ndim(x, name, 3)
    g, m, d = q.shape
    n = k.shape[1]
    if k.shape != (g, n, d) or v.shape != k.shape:
        raise ValueError(f"k {k.shape} and v {v.shape} do not fit q {q.shape}: expected (G, N, D) = ({g}, N, {d})")
    lengths = _checks.masking(lengths, causal_q, g * m, n, q)
    out = _checks.output(out, "out", (g, m, d), q.dtype, q)
    fused = mask is None and probs_out is None and q.dtype == np.float32 and isinstance(q, np.ndarray)
    if _kernels is None or not fused:
        scores = batched_matmul(q, k, trans_b=True, n_threads=n_threads)  # (G, M, N)
        probs = softmax(scores, scale=scale, lengths=lengths, causal_q=causal_q, mask=mask, out=probs_out,
                        n_threads=n_threads)
        return batched_matmul(probs, v, out=out, n_threads=n_threads)
    _kernels.attention(q, k, v, out, scale, lengths, causal_q, n_threads)
    return out
