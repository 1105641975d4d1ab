"""Argument checks of the CUDA ops: the twins of `aiotranslate.ops._checks` for cupy arrays.

Same errors as the CPU ops (TypeError for a wrong kind or dtype, ValueError for a wrong shape), plus
float16, which the GPU kernels take with float32 arithmetic. Shape-only checks (`ndim`, `shape`)
are the CPU ones: they only read `.ndim` and `.shape`.
"""

from __future__ import annotations

import math

import cupy
import numpy as np

from ...ops._checks import ndim, shape  # noqa: F401  (re-exported for the ops)

FLOAT_TYPES = (np.float16, np.float32, np.float64)


def float_array(x, name: str, dtype=None, *, strided_rows: bool = False) -> cupy.ndarray:
    """x as a C-contiguous float16/32/64 cupy array (a copy only when x is strided).

    strided_rows keeps a view whose last axis alone is contiguous (a KV-cache slice), for ops that
    hand it to cuBLAS, which takes strides; the raw kernels need C-contiguous input."""
    if not isinstance(x, cupy.ndarray):
        raise TypeError(f"{name} must be a cupy array, got {type(x).__name__}")
    if x.dtype.type not in FLOAT_TYPES:
        raise TypeError(f"{name} must be float16, float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected {np.dtype(dtype)} like the input")
    if strided_rows and x.ndim and x.strides[-1] == x.itemsize and min(x.strides) >= 0:
        return x
    return cupy.ascontiguousarray(x)


def int_array(x, name: str) -> cupy.ndarray:
    """x (a cupy or numpy array, or a sequence) as a C-contiguous int32 cupy array."""
    if not isinstance(x, cupy.ndarray):
        x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got {x.dtype}")
    return cupy.ascontiguousarray(cupy.asarray(x), dtype=cupy.int32)


def first_outside(ids: cupy.ndarray, upper: int) -> int | None:
    """The first value of ids outside [0, upper), or None.

    Costs one device sync, taken on purpose: a kernel indexing out of bounds would hit an illegal
    address, which leaves the CUDA context unusable for the whole process."""
    bad = (ids < 0) | (ids >= upper)
    if not bool(bad.any()):
        return None
    return int(ids[bad][0])


def output(out, name: str, expected: tuple[int, ...], dtype) -> cupy.ndarray:
    """A caller-owned output (checked: cupy, shape, dtype, C-contiguous) or a new one."""
    if out is None:
        return cupy.empty(expected, dtype=dtype)
    if not isinstance(out, cupy.ndarray):
        raise TypeError(f"{name} must be a cupy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if out.shape != expected:
        raise ValueError(f"{name} has shape {out.shape}, expected {expected}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return out


def rows(x: cupy.ndarray, name: str) -> cupy.ndarray:
    """View of x (..., N) as 2-D (R, N); x must have at least one dimension (R may be 0)."""
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension")
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
