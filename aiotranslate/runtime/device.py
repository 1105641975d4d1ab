"""Where a worker's kernels run: `CudaPlace` (one GPU and the worker's own stream) or `CpuPlace`.

Each worker makes its place once, on its own thread. Every job runs inside `place.active()`:
on a GPU, under the worker's `cupy.cuda.Device(i)` and its `cupy.cuda.Stream(non_blocking=True)`
(CuPy's current device and stream are per thread), and the job's stream is synchronised before
the job ends, inside the worker thread, never on the event loop. Workers of one GPU share that
GPU's copy of the weights (`models.device.to_device`); each owns its stream, KV caches and scratch.
`release_cuda_memory` hands the CuPy pools' cached blocks back to the driver once an engine is closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator


class CpuPlace:
    device_index = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        yield


class CudaPlace:
    """GPU `device_index` and a non-blocking stream of this worker, made on the worker thread."""

    def __init__(self, device_index: int) -> None:
        import cupy

        self.device_index = device_index
        self._device = cupy.cuda.Device(device_index)
        with self._device:
            self.stream = cupy.cuda.Stream(non_blocking=True)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with self._device, self.stream:
            try:
                yield
            finally:
                self.stream.synchronize()  # the job's work is done (or failed) before the next one


def release_cuda_memory(device_indices: Iterable[int]) -> None:
    """Free the blocks the CuPy memory pools cache for these GPUs (and the pinned host pool), once
    nothing holds device arrays any more: the weights' memory goes back to the driver."""
    import cupy

    pool = cupy.get_default_memory_pool()
    for index in sorted(set(device_indices)):
        with cupy.cuda.Device(index):
            pool.free_all_blocks()  # the pool of the current device only
    cupy.get_default_pinned_memory_pool().free_all_blocks()
