"""The CUDA kernels behind `aiotranslate.ops` for cupy arrays, with the native modules' interface.

Each function has the name and arguments of its twin in `native/` (`_softmax.softmax`,
`_norms.layer_norm`, ...): `aiotranslate.ops` checks the arguments once for both backends, then
calls the module its input's type picks (`ops._dispatch`). So the arrays here are already checked:
C-contiguous (or strided rows where noted), matching dtypes and shapes, int32 indices on the device.
The contract of each kernel is its twin in `aiotranslate.ops.reference`. Two have no native twin:
`bf16_linear` and `embedding_bf16` take bfloat16 weights as uint16 bits, the GPU's own layout
(`models.device_bf16` calls them; the CPU's bfloat16 packs its weights for `native/_qgemm`).

GEMMs are cuBLAS (through `cupy.matmul`, fp32 unless CUPY_TF32=1; float16 inputs accumulate in
float32; bfloat16 weights through cublasGemmEx, `bf16.bf16_gemm`); the fused row and elementwise
ops are the raw kernels of `kernels.py`. Everything is queued on the current CuPy stream and
nothing here synchronizes. `n_threads` is accepted for the shared interface and ignored.
"""

from __future__ import annotations

import cupy
import numpy as np

from ...ops import reference
from .bf16 import bf16_gemm
from .kernels import launch_flat, launch_rows


def _flag(array) -> np.int32:
    return np.int32(array is not None)


def softmax(x, out, scale, mask, lengths, causal_q, log, n_threads=1):
    """x, out (R, N); mask (M, N) tiling the rows or None; lengths int32 (L,) or None."""
    r, n = x.shape
    if n:
        args = (
            x,
            x if mask is None else mask,  # disabled pointers are never read
            x if lengths is None else lengths,
            out,
            np.int32(n),
            np.int32(0 if mask is None else mask.shape[0]),
            np.int32(0 if lengths is None else r // len(lengths)),
            np.int32(causal_q),
            np.float64(scale),
            np.int32(bool(log)),
        )
        launch_rows("softmax_rows", x.dtype, r, n, args)


def _norm(x, gamma, beta, eps, residual, out, rms):
    r, c = x.shape
    if c:
        args = (
            x,
            x if residual is None else residual,
            gamma,
            gamma if beta is None else beta,
            out,
            np.int32(c),
            _flag(residual),
            _flag(beta),
            np.int32(rms),
            np.float64(eps),
        )
        launch_rows("norm_rows", x.dtype, r, c, args)


def layer_norm(x, gamma, beta, eps, residual, out, n_threads=1):
    """x, residual (updated in place), out (R, C); gamma, beta (C,)."""
    _norm(x, gamma, beta, eps, residual, out, rms=False)


def rms_norm(x, gamma, eps, residual, out, n_threads=1):
    _norm(x, gamma, None, eps, residual, out, rms=True)


def _epilogue(y, bias, residual, act, out):
    """out = act(y + bias) + residual for y (R, C), bias (C,), residual (R, C); out may be y."""
    args = (
        y,
        y if bias is None else bias,
        y if residual is None else residual,
        out,
        np.int64(y.size),
        np.int32(y.shape[1]),
        _flag(bias),
        _flag(residual),
        np.int32(act),
    )
    launch_flat("epilogue", y.dtype, y.size, args)


def bias_activation(x, bias, act, out, n_threads=1):
    """out = act(x + bias) for x, out (R, C); out may be x."""
    _epilogue(x, bias, None, act, out)


def swiglu(x, out, n_threads=1):
    """out (R, F) = silu(x[:, :F]) * x[:, F:] for x (R, 2F)."""
    f = out.shape[1]
    launch_flat("swiglu", x.dtype, out.size, (x, out, np.int64(out.size), np.int32(f)))


def _linear(product, x, w, bias, act, residual, out):
    """out = act(product(x, w) + bias) + residual: `product(x, w, y)` writes x @ w.T into y, then one
    fused kernel applies bias, activation and residual in place, skipped when there is none of them.
    out may be residual itself (the residual stream updated in place): the product then goes to a
    scratch buffer first, since it would overwrite the residual before the epilogue reads it."""
    in_place = residual is not None and residual.data.ptr == out.data.ptr
    y = cupy.empty_like(out) if in_place else out
    product(x, w, y)
    if bias is not None or residual is not None or act != reference.ACT_NONE:
        _epilogue(y, bias, residual, act, out)


def _float_product(x, w, y):
    cupy.matmul(x, w.T, out=y)  # w.T is a transposed view: no copy


def linear(x, w, bias, act, residual, out, n_threads=1):
    """out (M, N) = act(x @ w.T + bias) + residual for x (M, K), w (N, K), through cuBLAS."""
    _linear(_float_product, x, w, bias, act, residual, out)


def bf16_linear(x, w, bias, act, residual, out, n_threads=1):
    """`linear` of float32 x (M, K) by a bfloat16 weight w: uint16 bits (N, K) (`bf16_gemm`); bias,
    residual and out float32."""
    _linear(bf16_gemm, x, w, bias, act, residual, out)


def batched_matmul(a, b, out, trans_b, alpha, n_threads=1):
    """out (G, M, N) = alpha * a @ b (b transposed when trans_b); a and b may be strided views whose
    last axis is contiguous (KV-cache slices): cuBLAS takes the strides. cupy.matmul has no alpha,
    so alpha scales the output afterwards."""
    cupy.matmul(a, b.transpose(0, 2, 1) if trans_b else b, out=out)
    if alpha != 1.0:
        out *= alpha


def rotary(x, positions, cos, sin, interleaved, n_threads=1):
    """Rotate x (N, H, D) in place by the angles of positions (N,); cos, sin float32 (P, R2)."""
    n, h, d = x.shape
    r2 = cos.shape[1]
    total = n * h * r2
    args = (x, positions, cos, sin, np.int64(total), np.int32(h), np.int32(d), np.int32(r2),
            np.int32(bool(interleaved)))  # fmt: skip
    launch_flat("rotary", x.dtype, total, args)


def embedding(ids, table, scale, out, n_threads=1):
    """out (N, C) = table[ids] * scale for int32 ids (N,) already checked in range."""
    c = table.shape[1]
    args = (ids, table, out, np.int64(out.size), np.int32(c), np.float64(scale))
    launch_flat("embedding", table.dtype, out.size, args)


def embedding_bf16(ids, table, scale, out, n_threads=1):
    """`embedding` of a bfloat16 table: uint16 bits (V, C) -> float32 rows out (N, C)."""
    c = table.shape[1]
    args = (ids, table, out, np.int64(out.size), np.int32(c), np.float64(scale))
    launch_flat("embedding_bf16", np.float32, out.size, args)


def argmax(x, out, n_threads=1):
    """out int32 (R,): index of the maximum of each row of x (R, N), N > 0."""
    r, n = x.shape
    launch_rows("argmax_rows", x.dtype, r, n, (x, out, np.int32(n)))


def topk(x, k, values, indices, n_threads=1):
    """values (R, k), int32 indices (R, k): the k largest of each row of x (R, N), descending.

    A stable sort of -x (NaN as -inf) keeps the lower index first among ties, as the reference.
    It sorts whole rows: correct for every k, to be replaced by a selection kernel for speed."""
    if x.shape[0] == 0 or k == 0:
        return
    z = cupy.where(cupy.isnan(x), x.dtype.type(-np.inf), x)
    idx = cupy.argsort(-z, axis=-1)[:, :k]
    values[...] = cupy.take_along_axis(x, idx, axis=-1)
    indices[...] = idx
