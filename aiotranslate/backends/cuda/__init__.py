"""The CUDA backend: the kernels of `aiotranslate.ops` for cupy arrays (`ops`, `kernels`).

Nothing calls it directly: `aiotranslate.ops.X(...)` given cupy arrays runs the kernel here, on the
current CuPy stream (a worker thread wraps its work in `with cupy.cuda.Stream(non_blocking=True):`
to keep it on its own stream). Custom kernels compile on first use (NVRTC, cached on disk by CuPy).

cupy is optional for aiotranslate; this package is the one place that needs it.
"""

from ..devices import missing_cupy

try:
    import cupy  # noqa: F401
except ImportError as e:
    raise missing_cupy() from e
