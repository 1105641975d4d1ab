"""Which kernels run an op: picked from the type of its (checked) input array.

A numpy array runs the compiled CPU kernels (`native/`), or `ops.reference` when they are missing;
a cupy array runs `backends.cuda.ops`, which has the same functions with the same arguments as the
native modules. The CPU path pays one isinstance per op; cupy is imported only for a cupy array.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


def kernels(x, cpu: ModuleType | None) -> ModuleType | None:
    """The kernel module for x: `cpu` (None: use the reference) for numpy, the CUDA one for cupy."""
    if isinstance(x, np.ndarray):
        return cpu
    from ..backends.cuda import ops as cuda_kernels

    return cuda_kernels
