"""Argument checks shared by the op wrappers: clear TypeError/ValueError instead of a crash in C."""

from __future__ import annotations

import math

import numpy as np

FLOAT_TYPES = (np.float32, np.float64)


def float_array(x, name: str, dtype=None) -> np.ndarray:
    """x as a C-contiguous float32/float64 array (a copy only when x is strided)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype.type not in FLOAT_TYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected {np.dtype(dtype)} like the input")
    return np.ascontiguousarray(x)


def int_array(x, name: str) -> np.ndarray:
    """x as a C-contiguous int32 array; any integer dtype is accepted, floats are refused."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.int32)


def ndim(x: np.ndarray, name: str, n: int) -> None:
    if x.ndim != n:
        raise ValueError(f"{name} must have {n} dimensions, got shape {x.shape}")


def shape(x: np.ndarray, name: str, expected: tuple[int, ...]) -> None:
    if x.shape != expected:
        raise ValueError(f"{name} has shape {x.shape}, expected {expected}")


def output(out, name: str, expected: tuple[int, ...], dtype) -> np.ndarray:
    """A caller-owned output (checked: shape, dtype, C-contiguous, writable) or a new one."""
    if out is None:
        return np.empty(expected, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if out.shape != expected:
        raise ValueError(f"{name} has shape {out.shape}, expected {expected}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writable")
    return out


def rows(x: np.ndarray, name: str) -> np.ndarray:
    """View of x (..., N) as 2-D (R, N); x must have at least one dimension."""
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension")
    # An explicit row count: reshape(-1, 0) is ambiguous when the last axis is empty.
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
