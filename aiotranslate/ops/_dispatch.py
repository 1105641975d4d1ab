"""Which kernels run an op: picked from the type of its (checked) input array.

A numpy array runs the compiled CPU kernels (`native/`), or `ops.reference` when they are missing;
a cupy array runs `backends.cuda.ops`, which has the same functions with the same arguments as the
native modules. The CPU path pays one isinstance per op; cupy is imported only for a cupy array.

The common call (host arrays as the kernel takes them, the output new) takes a short way: the op
calls the kernel first, and its typed arguments and its own checks are the checks. What they refuse
(`REFUSED`, raised before the kernel computes anything: a dtype or layout its typed memoryviews do
not take, shapes that do not fit) goes through the op's checked path, which converts it or says what
is wrong in the op's terms. The kernel makes the new output itself (out=None: no numpy buffer
protocol on it, native/common.pxd `new_output`), and a kernel over fused float types is called by its
dtype's specialization (`by_dtype`): a (1, 8) x (8, 8) packed linear takes 1.1-1.2 us a call this way
(1.6 with the output made by np.empty and passed in), numpy's x @ w.T 1.0 (timeit on a Zen 4).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

REFUSED = (TypeError, ValueError)


def by_dtype(fused) -> dict:
    """{dtype: the specialization} of a native kernel over fused float32/float64 types ({} for None):
    calling one skips Cython's dispatch over the fused types (~0.2 us a call)."""
    if fused is None:
        return {}
    return {np.dtype(np.float32): fused["float"], np.dtype(np.float64): fused["double"]}


def direct(kernels: dict, x, *args):
    """kernels[x.dtype](x, *args) (a `by_dtype` table) when the call takes the short way: x a 2-D host
    array of a dtype the table has. Otherwise, or where the kernel refuses its arguments (`REFUSED`),
    None: the op's checked path runs. The op passes out=None among args, so the result is new."""
    if type(x) is not np.ndarray or x.ndim != 2 or x.dtype not in kernels:
        return None
    try:
        return kernels[x.dtype](x, *args)
    except REFUSED:
        return None


def kernels(x, cpu: ModuleType | None) -> ModuleType | None:
    """The kernel module for x: `cpu` (None: use the reference) for numpy, the CUDA one for cupy."""
    if isinstance(x, np.ndarray):
        return cpu
    from ..backends.cuda import ops as cuda_kernels

    return cuda_kernels
