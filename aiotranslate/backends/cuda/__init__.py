"""The CUDA backend: every op of `aiotranslate.ops` for cupy arrays, with the same signatures.

`aiotranslate.backends.cuda.ops` mirrors `aiotranslate.ops` name for name and keyword for keyword;
results follow `aiotranslate.ops.reference`. Ops run on the current CuPy stream, so a worker thread
that wraps its work in `with cupy.cuda.Stream(non_blocking=True):` keeps it on its own stream.
Custom kernels compile on first use (NVRTC, cached on disk by CuPy).

cupy is optional for aiotranslate; this package is the one place that needs it.
"""

try:
    import cupy  # noqa: F401
except ImportError as e:
    raise ImportError(
        "aiotranslate's CUDA backend needs CuPy: pip install 'aiotranslate[gpu]' "
        "(or the CuPy wheel for your CUDA: cupy-cuda12x or cupy-cuda13x)"
    ) from e

from .ops import (
    activation,
    argmax,
    batched_matmul,
    embedding,
    layer_norm,
    linear,
    log_softmax,
    rms_norm,
    rotary,
    rotary_tables,
    sinusoidal_table,
    softmax,
    swiglu,
    topk,
)

__all__ = [
    "activation",
    "argmax",
    "batched_matmul",
    "embedding",
    "layer_norm",
    "linear",
    "log_softmax",
    "rms_norm",
    "rotary",
    "rotary_tables",
    "sinusoidal_table",
    "softmax",
    "swiglu",
    "topk",
]
