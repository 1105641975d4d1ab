"""Device backends: `cuda` holds the CuPy versions of `aiotranslate.ops` (numpy arrays use the ops as
they are). The backend of an op is taken from its input array, so nothing here picks a device.

This module never imports cupy: `is_cuda_array` looks at the array's type, and `get_array_module`
imports cupy only for an array that already is a cupy array (so cupy is installed).
"""

from __future__ import annotations

import numpy as np


def is_cuda_array(x) -> bool:
    """True for a `cupy.ndarray` (or a subclass of it), without importing cupy."""
    if isinstance(x, np.ndarray):  # the CPU path: one isinstance
        return False
    return any(
        cls.__name__ == "ndarray" and cls.__module__.partition(".")[0] == "cupy"
        for cls in type(x).__mro__
    )


def get_array_module(x):
    """The array namespace of x: `cupy` for a cupy array, else `numpy`."""
    if not isinstance(x, np.ndarray) and is_cuda_array(x):
        import cupy

        return cupy
    return np


def place_like(a, x):
    """Host array a (indices, masks, lengths) in the namespace of x, for indexing or mixing with x:
    a itself when x is a numpy array, a small device copy when x is a cupy array."""
    if isinstance(x, np.ndarray):
        return a
    return get_array_module(x).asarray(a)


def share_like(a, x):
    """`place_like` for an array that other threads read once it is published (a table swapped
    into a shared layer): on a device the copy is finished before it is returned, since those
    readers run on their own streams, unordered with this one."""
    placed = place_like(a, x)
    if not isinstance(x, np.ndarray):
        get_array_module(x).cuda.get_current_stream().synchronize()
    return placed


def to_host(x) -> np.ndarray:
    """x as a numpy array: x itself on the host, a copy of a device array (waits for its stream)."""
    return x if isinstance(x, np.ndarray) else x.get()


def host_float32(x) -> np.ndarray:
    """x (model outputs on any device, in any float dtype) as a float32 numpy array."""
    return to_host(x).astype(np.float32, copy=False)
