"""Which device an engine runs on: `resolve_device` ("cpu", "cuda", "auto" and device_index) and
`get_cuda_device_count`. Imports cupy only to count GPUs; a machine without it counts none.

What it is not: moving weights (`layers.device.to_device`) or streams (the engines' workers).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

DEVICES = ("cpu", "cuda", "auto")
INSTALL_HINT = "pip install 'aiotranslate[gpu]' (or the CuPy wheel for your CUDA: cupy-cuda12x or cupy-cuda13x)"


def missing_cupy() -> ImportError:
    return ImportError(f"aiotranslate's CUDA backend needs CuPy: {INSTALL_HINT}")


def _cupy():
    """The cupy module, or None when it is not installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # import-time notes about CUDA paths are not errors
            import cupy
    except ImportError:
        return None
    return cupy


def get_cuda_device_count() -> int:
    """The number of CUDA GPUs visible to this process: 0 without cupy, a driver or a GPU."""
    cupy = _cupy()
    if cupy is None:
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # CUDARuntimeError without a driver or a device
        return 0


def resolve_device(device: str, device_index: int | Sequence[int] = 0) -> tuple[str, tuple[int, ...]]:
    """("cpu", (0,)) or ("cuda", the GPU indices, one entry per set of workers: may repeat).

    "auto" is cuda when cupy and a GPU are present, else cpu. On the CPU device_index is ignored
    (CTranslate2 accepts 0 there)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    indices = (device_index,) if isinstance(device_index, int) else tuple(device_index)
    if not indices or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise ValueError(f"device_index must be an int or a non-empty list of ints, got {device_index!r}")
    if device == "cpu":
        return "cpu", (0,)
    count = get_cuda_device_count()
    if device == "auto":
        if not count:
            return "cpu", (0,)
    elif _cupy() is None:
        raise missing_cupy()
    if count == 0:
        raise RuntimeError("device='cuda' but CUDA reports no GPU (check the driver and CUDA_VISIBLE_DEVICES)")
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise ValueError(f"device_index {bad} out of range: this machine has {count} CUDA device(s)")
    return "cuda", indices
