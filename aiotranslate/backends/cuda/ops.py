"""The ops of `aiotranslate.ops` for cupy arrays: same names, keywords, checks and results.

The contract of each op is its twin in `aiotranslate.ops.reference`. GEMMs are cuBLAS (through
`cupy.matmul`, fp32 unless CUPY_TF32=1); the fused row and elementwise ops are the raw kernels of
`kernels.py`. Everything is queued on the current CuPy stream and nothing here synchronizes, except
the range checks of token ids and positions (see `_checks.first_outside`).
`n_threads` is accepted for signature compatibility and ignored. float16 inputs are accepted and
computed in float32.
"""

from __future__ import annotations

import cupy
import numpy as np

from ... import ops as cpu_ops
from ...ops import reference
from ...ops.gemm import activation_code
from . import _checks
from .kernels import launch_flat, launch_rows


def _flag(array) -> np.int32:
    return np.int32(array is not None)


def softmax(x, *, scale=1.0, mask=None, lengths=None, causal_q=0, out=None, n_threads=1, log=False):
    """Softmax of scale * x + mask over the last axis of x (..., N); see `reference.softmax`."""
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    r, n = x2.shape
    if mask is not None:
        mask = _checks.rows(_checks.float_array(mask, "mask", x.dtype), "mask")
        if mask.shape[1] != n or mask.shape[0] == 0 or r % mask.shape[0]:
            raise ValueError(f"mask of shape {mask.shape} does not tile rows of shape ({r}, {n})")
    if lengths is not None:
        lengths = _checks.int_array(lengths, "lengths")
        _checks.ndim(lengths, "lengths", 1)
        if len(lengths) == 0 or r % len(lengths):
            raise ValueError(f"{len(lengths)} lengths do not divide {r} rows")
    if causal_q < 0 or (causal_q and (r % causal_q or causal_q > n)):
        raise ValueError(f"causal_q={causal_q} must divide the {r} rows and be <= {n} columns")
    out = _checks.output(out, "out", x.shape, x.dtype)
    if n:
        args = (
            x2,
            x2 if mask is None else mask,  # disabled pointers are never read
            x2 if lengths is None else lengths,
            out,
            np.int32(n),
            np.int32(0 if mask is None else mask.shape[0]),
            np.int32(0 if lengths is None else r // len(lengths)),
            np.int32(causal_q),
            np.float64(scale),
            np.int32(bool(log)),
        )
        launch_rows("softmax_rows", x.dtype, r, n, args)
    return out


def log_softmax(x, **kwargs):
    """log of `softmax` (same arguments), computed stably: masked columns are -inf."""
    return softmax(x, log=True, **kwargs)


def _norm(x, gamma, beta, eps, residual, out, rms):
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    r, c = x2.shape
    gamma = _checks.float_array(gamma, "gamma", x.dtype)
    _checks.shape(gamma, "gamma", (c,))
    if beta is not None:
        beta = _checks.float_array(beta, "beta", x.dtype)
        _checks.shape(beta, "beta", (c,))
    if residual is not None:
        # Updated in place, so no silent contiguous copy: it must already be C-contiguous.
        residual = _checks.output(residual, "residual", x.shape, x.dtype)
    out = _checks.output(out, "out", x.shape, x.dtype)
    if c:
        args = (
            x2,
            x2 if residual is None else residual,
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
    return out


def layer_norm(x, gamma, beta=None, *, eps=1e-5, residual=None, out=None, n_threads=1):
    """(s - mean) / sqrt(var + eps) * gamma + beta with s = x, or s = residual += x."""
    return _norm(x, gamma, beta, eps, residual, out, rms=False)


def rms_norm(x, gamma, *, eps=1e-6, residual=None, out=None, n_threads=1):
    """s / sqrt(mean(s^2) + eps) * gamma with s = x, or s = residual += x."""
    return _norm(x, gamma, None, eps, residual, out, rms=True)


def activation(x, activation, *, bias=None, out=None, n_threads=1):
    """act(x + bias) for x (..., C), bias (C,); activation is a name ("gelu", "silu", ...)."""
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    if bias is not None:
        bias = _checks.float_array(bias, "bias", x.dtype)
        _checks.shape(bias, "bias", (x2.shape[1],))
    act = activation_code(activation)
    out = _checks.output(out, "out", x.shape, x.dtype)
    _epilogue(x2, bias, None, act, _checks.rows(out, "out"))
    return out


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


def swiglu(x, *, out=None, n_threads=1):
    """silu(x[..., :F]) * x[..., F:] for x (..., 2F) -> (..., F): gate and up from one fused GEMM."""
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    if x2.shape[1] % 2:
        raise ValueError(f"swiglu needs an even last dimension (gate and up halves), got {x.shape}")
    f = x2.shape[1] // 2
    out = _checks.output(out, "out", x.shape[:-1] + (f,), x.dtype)
    launch_flat("swiglu", x.dtype, out.size, (x2, out, np.int64(out.size), np.int32(f)))
    return out


def linear(x, w, bias=None, *, activation=None, residual=None, out=None, n_threads=1):
    """act(x @ w.T + bias) + residual for x (..., K), w (N, K) -> (..., N).

    cuBLAS writes x @ w.T into out (w.T is a transposed view: no copy), then one fused kernel
    applies bias, activation and residual in place, skipped when there is none of them.
    out may be residual itself (the residual stream updated in place): the GEMM then goes to a
    scratch buffer first, since it would overwrite the residual before the epilogue reads it."""
    x = _checks.float_array(x, "x")
    w = _checks.float_array(w, "w", x.dtype)
    _checks.ndim(w, "w", 2)
    x2 = _checks.rows(x, "x")
    n, k = w.shape
    if x2.shape[1] != k:
        raise ValueError(f"x has {x2.shape[1]} features but w has shape {w.shape} (N, K={k} expected)")
    if bias is not None:
        bias = _checks.float_array(bias, "bias", x.dtype)
        _checks.shape(bias, "bias", (n,))
    if residual is not None:
        residual = _checks.rows(_checks.float_array(residual, "residual", x.dtype), "residual")
        _checks.shape(residual, "residual", (x2.shape[0], n))
    act = activation_code(activation)
    out = _checks.output(out, "out", x.shape[:-1] + (n,), x.dtype)
    out2 = _checks.rows(out, "out")
    in_place = residual is not None and residual.data.ptr == out2.data.ptr
    y = cupy.matmul(x2, w.T, out=None if in_place else out2)
    if bias is not None or residual is not None or act != reference.ACT_NONE:
        _epilogue(y, bias, residual, act, out2)
    return out


def batched_matmul(a, b, *, trans_b=False, alpha=1.0, out=None, n_threads=1):
    """alpha * a @ b (b transposed when trans_b) for a (G, M, K); see `reference.batched_matmul`.

    a and b may be strided views whose last axis is contiguous (KV-cache slices); cuBLAS takes the
    strides. alpha scales the output afterwards (cupy.matmul has no alpha)."""
    a = _checks.float_array(a, "a", strided_rows=True)
    b = _checks.float_array(b, "b", a.dtype, strided_rows=True)
    _checks.ndim(a, "a", 3)
    _checks.ndim(b, "b", 3)
    g, m, k = a.shape
    n = b.shape[1] if trans_b else b.shape[2]
    kb = b.shape[2] if trans_b else b.shape[1]
    if b.shape[0] != g or kb != k:
        layout = "(G, N, K)" if trans_b else "(G, K, N)"
        raise ValueError(f"b has shape {b.shape}, expected {layout} with G={g}, K={k}")
    out = _checks.output(out, "out", (g, m, n), a.dtype)
    cupy.matmul(a, b.transpose(0, 2, 1) if trans_b else b, out=out)
    if alpha != 1.0:
        out *= alpha
    return out


def rotary(x, positions, cos, sin, *, interleaved=False, n_threads=1):
    """Rotate x (N, H, D) in place by the angles of positions (N,); see `reference.rotary`."""
    if not isinstance(x, cupy.ndarray) or not x.flags.c_contiguous:
        raise ValueError("rotary works in place: x must be a C-contiguous cupy array")
    _checks.float_array(x, "x")  # dtype check only: x itself is rotated
    _checks.ndim(x, "x", 3)
    cos = _checks.float_array(cos, "cos", np.float32)
    sin = _checks.float_array(sin, "sin", np.float32)
    _checks.ndim(cos, "cos", 2)
    _checks.shape(sin, "sin", cos.shape)
    positions = _checks.int_array(positions, "positions")
    _checks.shape(positions, "positions", (x.shape[0],))
    n, h, d = x.shape
    r2 = cos.shape[1]
    if 2 * r2 > d:
        raise ValueError(f"rotary tables rotate {2 * r2} features, heads have {d}")
    if positions.size and _checks.first_outside(positions, cos.shape[0]) is not None:
        raise ValueError(f"positions must lie in [0, {cos.shape[0]}), the length of the tables")
    total = n * h * r2
    args = (x, positions, cos, sin, np.int64(total), np.int32(h), np.int32(d), np.int32(r2),
            np.int32(bool(interleaved)))
    launch_flat("rotary", x.dtype, total, args)
    return x


def rotary_tables(inv_freq, n_positions, attention_scaling=1.0):
    """cos and sin tables (P, R2) on the device, computed on the host as `reference.rotary_tables`."""
    cos, sin = reference.rotary_tables(cupy.asnumpy(inv_freq), n_positions, attention_scaling)
    return cupy.asarray(cos), cupy.asarray(sin)


def sinusoidal_table(n_positions, dim, *, log_timescale_increment=None, offset=0):
    """float32 (n_positions, dim) table on the device, made once on the host by the CPU op."""
    return cupy.asarray(
        cpu_ops.sinusoidal_table(
            n_positions, dim, log_timescale_increment=log_timescale_increment, offset=offset
        )
    )


def embedding(ids, table, *, scale=1.0, out=None, n_threads=1):
    """table[ids] * scale for ids (...,) and table (V, C) -> (..., C); ids on host or device."""
    table = _checks.float_array(table, "table")
    _checks.ndim(table, "table", 2)
    ids = _checks.int_array(ids, "ids")
    v, c = table.shape
    flat = ids.reshape(-1)
    if flat.size:
        bad = _checks.first_outside(flat, v)
        if bad is not None:
            raise ValueError(f"token id {bad} is out of range for a vocabulary of {v}")
    out = _checks.output(out, "out", ids.shape + (c,), table.dtype)
    args = (flat, table, out, np.int64(out.size), np.int32(c), np.float64(scale))
    launch_flat("embedding", table.dtype, out.size, args)
    return out


def argmax(x, *, n_threads=1):
    """int32 index of the maximum of each row of x (..., N); ties -> lowest index; N must be > 0."""
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    r, n = x2.shape
    if n == 0:
        raise ValueError("argmax of an empty row is undefined")
    out = cupy.empty(r, dtype=cupy.int32)
    launch_rows("argmax_rows", x.dtype, r, n, (x2, out, np.int32(n)))
    return out.reshape(x.shape[:-1])


def topk(x, k, *, n_threads=1):
    """(values, int32 indices) of the k largest of each row of x (..., N), sorted descending.

    A stable sort of -x (NaN as -inf) keeps the lower index first among ties, as the reference.
    It sorts whole rows: correct for every k, to be replaced by a selection kernel for speed."""
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    r, n = x2.shape
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must lie in [0, {n}]")
    shape = x.shape[:-1] + (k,)
    if r == 0 or k == 0:
        return cupy.empty(shape, dtype=x.dtype), cupy.empty(shape, dtype=cupy.int32)
    z = cupy.where(cupy.isnan(x2), x.dtype.type(-np.inf), x2)
    idx = cupy.argsort(-z, axis=-1)[:, :k]
    values = cupy.take_along_axis(x2, idx, axis=-1)
    return values.reshape(shape), idx.astype(cupy.int32).reshape(shape)
