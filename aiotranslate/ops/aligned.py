"""Arrays whose data starts on a cache line (64 bytes), for the packed weights the kernels stream.

numpy aligns its allocations to 16 bytes only. Every AVX-512 load (a cache line) from such data
straddles two lines: the one-row products of decoding ran 5-10% slower on packed float32 weights in
cache, 10-18% on unpacked ones (the kernels alone, in C, on a Zen 4; equal from memory). The engines'
worker threads allocate through the buffer cache (native/buffer_cache.c), 64-byte aligned already.
"""

from __future__ import annotations

import math

import numpy as np

ALIGNMENT = 64


def empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape` whose data (if any) starts on a 64-byte boundary:
    a view into a larger byte buffer, which it keeps alive."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    out = empty(shape, dtype)
    out.fill(0)
    return out


def owns_buffer(a: np.ndarray) -> bool:
    """Whether a is an array `empty` made: the only view of a byte buffer of its own, which replacing a
    frees (layers.weight_memory moves such arrays as it moves the arrays that own their data)."""
    base = a.base
    return (isinstance(base, np.ndarray) and base.flags.owndata and base.dtype == np.uint8
            and base.nbytes == a.nbytes + ALIGNMENT)  # fmt: skip
