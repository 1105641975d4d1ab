"""Which kernels run an op: picked from the type of its (checked) input array.

A numpy array runs the compiled CPU kernels (`native/`), or `ops.reference` when they are missing;
a cupy array runs `backends.cuda.ops`, which has the same functions with the same arguments as the
native modules. The CPU path pays one isinstance per op; cupy is imported only for a cupy array.

The common call (host arrays as the kernel takes them, the output new) takes a short way: the op
calls the kernel first, and its typed arguments and its own checks are the checks. What they refuse
(`REFUSED`, raised before the kernel computes anything: a dtype or layout its typed memoryviews do
not take, shapes that do not fit) goes through the op's checked path, which converts it or says what
is wrong in the op's terms. The linear kernels make the new output themselves (without numpy's
buffer protocol): a (1, 8) x (8, 8) packed linear takes 1.1-1.2 us a call this way (1.6 with the
output made by np.empty and passed in), numpy's x @ w.T 1.0 (timeit on a Zen 4).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

REFUSED = (TypeError, ValueError)


def kernels(x, cpu: ModuleType | None) -> ModuleType | None:
    """The kernel module for x: `cpu` (None: use the reference) for numpy, the CUDA one for cupy."""
    if isinstance(x, np.ndarray):
        return cpu
    from ..backends.cuda import ops as cuda_kernels

    return cuda_kernels
