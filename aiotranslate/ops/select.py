"""argmax and top-k over the last axis: greedy search, beam search and top-k sampling.
Kernels: `native/_select.pyx`."""

from __future__ import annotations

import numpy as np

from .. import _native
from . import _checks, _dispatch, reference

_kernels = _native.load("_select")


def argmax(x, *, n_threads=1):
    """int32 index of the maximum of each row of x (..., N); ties -> lowest index; N must be > 0."""
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    if x2.shape[1] == 0:
        raise ValueError("argmax of an empty row is undefined")
    out = _checks.output(None, "out", (x2.shape[0],), np.int32, x)
    kernels = _dispatch.kernels(x, _kernels)
    if kernels is None:
        out[...] = reference.argmax(x2)
    else:
        kernels.argmax(x2, out, n_threads)
    return out.reshape(x.shape[:-1])


def topk(x, k, *, n_threads=1):
    """(values, int32 indices) of the k largest of each row of x (..., N), sorted descending."""
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    if not 0 <= k <= x2.shape[1]:
        raise ValueError(f"k={k} must lie in [0, {x2.shape[1]}]")
    values = _checks.output(None, "values", (x2.shape[0], k), x.dtype, x)
    indices = _checks.output(None, "indices", (x2.shape[0], k), np.int32, x)
    kernels = _dispatch.kernels(x, _kernels)
    if kernels is None:
        values[...], indices[...] = reference.topk(x2, k)
    else:
        kernels.topk(x2, k, values, indices, n_threads)
    shape = x.shape[:-1] + (k,)
    return values.reshape(shape), indices.reshape(shape)
