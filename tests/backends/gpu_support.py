"""What the GPU tests share: `cupy` (None without it) and `requires_gpu`, the marks that select them
(`-m gpu`) and skip them without cupy or a CUDA device (the CPU CI has neither)."""

from __future__ import annotations

import warnings

import pytest

try:
    with warnings.catch_warnings():
        # cupy's import-time notes about CUDA paths are environment reports, not test failures
        # (and the project's filterwarnings=error would turn them into a silent skip below).
        warnings.simplefilter("ignore")
        import cupy

    HAVE_GPU, WHY_NOT = cupy.cuda.runtime.getDeviceCount() > 0, "no CUDA device"
except Exception as e:  # ImportError, or CUDARuntimeError without a driver or a device
    cupy = None
    HAVE_GPU, WHY_NOT = False, f"{type(e).__name__}: {e}"

requires_gpu = [pytest.mark.gpu, pytest.mark.skipif(not HAVE_GPU, reason=f"needs cupy and a CUDA GPU ({WHY_NOT})")]
