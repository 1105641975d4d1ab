"""Position information and token embeddings: rotary embeddings (in place), the sinusoidal table,
and the embedding gather. Kernels: `native/_positions.pyx`."""

from __future__ import annotations

import numpy as np

from .. import _native
from . import _checks, _dispatch, reference

_kernels = _native.load("_positions")

rotary_tables = reference.rotary_tables  # computed once per model: numpy is the right tool


def rotary(x, positions, cos, sin, *, interleaved=False, n_threads=1):
    """Rotate x (N, H, D) in place by the angles of positions (N,); see `reference.rotary`.
    cos and sin: float32 tables (P, R2) in x's namespace; positions may be on the host."""
    if _kernels is not None and type(x) is np.ndarray:  # the short way (`_dispatch`)
        try:
            _kernels.rotary(x, positions, cos, sin, interleaved, n_threads)
            return x
        except _dispatch.REFUSED:
            pass
    if not _checks.writable_contiguous(x):
        raise ValueError("rotary works in place: x must be a writable C-contiguous numpy or cupy array")
    x = _checks.float_array(x, "x")  # the dtype check: x is contiguous, so this is x itself
    _checks.ndim(x, "x", 3)
    cos = _checks.float_array(cos, "cos", x, dtype=np.float32)
    sin = _checks.float_array(sin, "sin", x, dtype=np.float32)
    _checks.ndim(cos, "cos", 2)
    _checks.shape(sin, "sin", cos.shape)
    positions = _checks.int_array(positions, "positions", x)
    _checks.shape(positions, "positions", (x.shape[0],))
    if 2 * cos.shape[1] > x.shape[2]:
        raise ValueError(f"rotary tables rotate {2 * cos.shape[1]} features, heads have {x.shape[2]}")
    if _checks.first_outside(positions, cos.shape[0]) is not None:
        raise ValueError(f"positions must lie in [0, {cos.shape[0]}), the length of the tables")
    kernels = _dispatch.kernels(x, _kernels)
    if kernels is None:
        x[...] = reference.rotary(x, positions, cos, sin, interleaved)
    else:
        kernels.rotary(x, positions, cos, sin, interleaved, n_threads)
    return x


def sinusoidal_table(n_positions, dim, *, log_timescale_increment=None, offset=0):
    """float32 (n_positions, dim) table, sin half then cos half; see `reference.sinusoidal_table`."""
    if n_positions < 0 or dim < 0 or dim % 2:
        raise ValueError(f"need n_positions >= 0 and an even dim >= 0, got {n_positions}, {dim}")
    if _kernels is None:
        return reference.sinusoidal_table(n_positions, dim, log_timescale_increment, offset)
    half = dim // 2
    inc = np.log(10000.0) / max(half, 1) if log_timescale_increment is None else log_timescale_increment
    out = np.empty((n_positions, dim), dtype=np.float32)
    _kernels.sinusoidal_table(out, float(inc), int(offset))
    return out


def embedding(ids, table, *, scale=1.0, out=None, n_threads=1):
    """table[ids] * scale for ids (...,) and table (V, C) -> (..., C); ids may be on the host."""
    table = _checks.float_array(table, "table")
    _checks.ndim(table, "table", 2)
    ids = _checks.int_array(ids, "ids", table)
    flat = ids.reshape(-1)
    bad = _checks.first_outside(flat, table.shape[0])
    if bad is not None:
        raise ValueError(f"token id {bad} is out of range for a vocabulary of {table.shape[0]}")
    out = _checks.output(out, "out", ids.shape + (table.shape[1],), table.dtype, table)
    kernels = _dispatch.kernels(table, _kernels)
    if kernels is None:
        out[...] = reference.embedding(flat, table, scale).reshape(out.shape)
    else:
        kernels.embedding(flat, table, scale, out.reshape(flat.size, table.shape[1]), n_threads)
    return out
