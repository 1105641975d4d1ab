"""Argument checks shared by the ops on both backends: clear TypeError/ValueError instead of a crash
in C or an illegal address on the GPU.

An op's arrays are numpy arrays (CPU kernels) or cupy arrays (CUDA kernels). The first input picks
the namespace; every other float array must be in the same one (`like=`): a mix is a TypeError,
never a silent copy across the bus. Integer index arrays (lengths, positions, token ids) may come
from the host and are moved to the op's namespace here, small and once per call.
Nothing here imports cupy unless it was handed a cupy array (so cupy is installed).
"""

from __future__ import annotations

import math

import numpy as np

from ..backends import get_array_module, is_cuda_array

HOST_FLOATS = (np.float32, np.float64)
DEVICE_FLOATS = (np.float16, np.float32, np.float64)  # float16: stored in half, computed in float32
_INT32 = np.iinfo(np.int32)


def namespace(x, name: str):
    """numpy or cupy, the module of array x; anything else is a TypeError."""
    if isinstance(x, np.ndarray):  # first: the CPU path pays one isinstance
        return np
    if is_cuda_array(x):
        return get_array_module(x)
    raise TypeError(f"{name} must be a numpy or cupy array, got {type(x).__name__}")


def _mixed(name: str, host: bool) -> TypeError:
    where = "numpy (CPU)" if host else "cupy (GPU)"
    return TypeError(f"{name} is a {where} array but the op's input is not: move both to one device")


def float_array(x, name: str, like=None, *, dtype=None, strided_rows: bool = False):
    """x as a C-contiguous float array (a copy only when x is strided): float32/float64 on the host,
    also float16 on the device. like: the op's input, whose namespace x must share and whose dtype
    it must have (unless dtype says otherwise).

    strided_rows keeps a view whose last axis alone is contiguous, such as a KV-cache slice
    (G, T, D) of a (G, T_max, D) buffer: the kernel takes the outer strides as leading dimensions."""
    host = isinstance(x, np.ndarray)  # the CPU path: plain isinstance checks, no lookups
    if not host:
        namespace(x, name)  # a cupy array, or a TypeError
    if like is not None:
        if isinstance(like, np.ndarray) is not host:
            raise _mixed(name, host)
        dtype = like.dtype if dtype is None else dtype
    floats = HOST_FLOATS if host else DEVICE_FLOATS
    if x.dtype.type not in floats:
        names = " or ".join(np.dtype(t).name for t in floats)
        raise TypeError(f"{name} must be {names}, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected {np.dtype(dtype)} like the input")
    if strided_rows and x.ndim and x.strides[-1] == x.itemsize and min(x.strides) >= 0:
        return x
    return np.ascontiguousarray(x) if host else get_array_module(x).ascontiguousarray(x)


def host_array(x, name: str, op: str) -> None:
    """Refuse a device array for an op that only has CPU kernels."""
    if is_cuda_array(x):
        raise TypeError(f"{op} has no CUDA kernel: {name} must be a numpy array")


def int_array(x, name: str, like=None):
    """x as a C-contiguous int32 array in the namespace of `like` (numpy when None); any integer
    dtype is accepted, floats are refused. Host values are range-checked before the cast."""
    xp = np if like is None else namespace(like, "x")
    if not is_cuda_array(x):
        x = np.asarray(x)
    # dtype attributes, not np.issubdtype / np.iinfo: this runs on every masked op (~2 us saved per call)
    kind, size = x.dtype.kind, x.dtype.itemsize
    if kind not in "iu":
        raise TypeError(f"{name} must hold integers, got {x.dtype}")
    if isinstance(x, np.ndarray) and x.size and (size > 4 or (kind == "u" and size == 4)):
        if x.min() < _INT32.min or x.max() > _INT32.max:
            raise ValueError(f"{name} holds values outside int32")  # the cast would wrap them into range
    if xp is np:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} is a cupy (GPU) array but the op's input is a numpy array")
        return np.ascontiguousarray(x, dtype=np.int32)
    return xp.ascontiguousarray(xp.asarray(x), dtype=xp.int32)


def row_indices(rows, n: int) -> np.ndarray:
    """`rows` of a packed weight's select as int64, each in [0, n)."""
    rows = int_array(rows, "rows").astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"rows must lie in [0, {n})")
    return rows


def first_outside(ids, upper: int) -> int | None:
    """The first value of ids outside [0, upper), or None.

    On the device this costs one sync, taken on purpose: a kernel indexing out of bounds would hit
    an illegal address, which leaves the CUDA context unusable for the whole process."""
    if not ids.size or (int(ids.min()) >= 0 and int(ids.max()) < upper):
        return None
    return int(ids[(ids < 0) | (ids >= upper)][0])


def ndim(x, name: str, n: int) -> None:
    if x.ndim != n:
        raise ValueError(f"{name} must have {n} dimensions, got shape {x.shape}")


def shape(x, name: str, expected: tuple[int, ...]) -> None:
    if x.shape != expected:
        raise ValueError(f"{name} has shape {x.shape}, expected {expected}")


def writable_contiguous(x) -> bool:
    """x is a numpy or cupy array that an op may write in place (cupy arrays are always writable)."""
    if not (isinstance(x, np.ndarray) or is_cuda_array(x)):
        return False
    return x.flags.c_contiguous and getattr(x.flags, "writeable", True)


def output(out, name: str, expected: tuple[int, ...], dtype, like=None):
    """A caller-owned output (checked: namespace of `like`, shape, dtype, C-contiguous, writable) or
    a new one in that namespace (numpy when like is None)."""
    host = like is None or isinstance(like, np.ndarray)
    if out is None:
        return np.empty(expected, dtype=dtype) if host else get_array_module(like).empty(expected, dtype=dtype)
    out_host = isinstance(out, np.ndarray)
    if not out_host:
        namespace(out, name)  # a cupy array, or the TypeError that says what it is
    if out_host is not host:
        raise _mixed(name, out_host)
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if out.shape != expected:
        raise ValueError(f"{name} has shape {out.shape}, expected {expected}")
    if not writable_contiguous(out):
        raise ValueError(f"{name} must be C-contiguous and writable")
    return out


def masking(lengths, causal_q: int, rows: int, cols: int, like):
    """The checked masks of a softmax over `rows` rows of `cols` columns (see `reference.softmax`):
    lengths as int32 in the namespace of `like` (or None); causal_q must divide the rows, <= cols."""
    if lengths is not None:
        lengths = int_array(lengths, "lengths", like)
        ndim(lengths, "lengths", 1)
        if len(lengths) == 0 or rows % len(lengths):
            raise ValueError(f"{len(lengths)} lengths do not divide {rows} rows")
    if causal_q < 0 or (causal_q and (rows % causal_q or causal_q > cols)):
        raise ValueError(f"causal_q={causal_q} must divide the {rows} rows and be <= {cols} columns")
    return lengths


def rows(x, name: str):
    """View of x (..., N) as 2-D (R, N); x must have at least one dimension. A 2-D x is returned as
    it is: the reshape costs ~0.5 us, a tenth of a small op's whole call."""
    if x.ndim == 2:
        return x
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension")
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # not -1: N may be 0
