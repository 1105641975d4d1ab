"""Matrix products: `linear` (x @ W.T with a fused bias/activation/residual epilogue) and
`batched_matmul` (the attention products Q @ K^T and P @ V over batch x heads).

The kernels are `native/_gemm.pyx`: BLAS sgemm on per-thread slices of the output for large M,
our own register-blocked kernel for the small-M shapes of decoding.

Importing this module holds scipy's own BLAS (the one the kernels call) to one thread; see
`_single_thread_scipy_blas`.
"""

from __future__ import annotations

import os

import numpy as np

from .. import _native
from . import _checks, _dispatch, reference


def _single_thread_scipy_blas() -> None:
    """Set the BLAS behind scipy.linalg.cython_blas to one thread, once, at import.

    The kernels call it on one block per OpenMP thread, so its own thread pool would oversubscribe
    the cores and make concurrent callers queue on its lock. scipy's wheels ship their own OpenBLAS
    (in scipy.libs), apart from numpy's, so numpy's matmul keeps its threads. A BLAS that scipy
    shares with numpy (system or conda builds) is left alone: run with OPENBLAS_NUM_THREADS=1 (or
    threadpoolctl) there. A `threadpool_limits(user_api="blas")` block around our calls raises it
    again for its duration.
    """
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library so threadpoolctl sees it)
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    root = os.path.dirname(os.path.realpath(scipy.__file__))  # matches scipy/ and scipy.libs/
    own = [
        lib.filepath
        for lib in controller.lib_controllers
        if lib.user_api == "blas" and os.path.realpath(lib.filepath).startswith(root)
    ]
    if own:
        controller.select(filepath=own).limit(limits=1)


_kernels = _native.load("_gemm")
if _kernels is not None:
    _single_thread_scipy_blas()


def activation_code(activation) -> int:
    try:
        return reference.ACTIVATIONS[activation]
    except (KeyError, TypeError):
        names = sorted(k for k in reference.ACTIVATIONS if k)
        raise ValueError(f"unknown activation {activation!r}; expected one of {names}") from None


def linear_arguments(x, shape: tuple[int, int], bias, residual, out, activation):
    """The checked arguments of a linear of x (..., K) (already a checked float array) by a weight of
    `shape` (N, K): 2-D views of x, bias, residual, the output (allocated unless given) and its 2-D
    view, and the activation code. Shared by the float and the quantized linears."""
    x2 = _checks.rows(x, "x")
    n, k = shape
    if x2.shape[1] != k:
        raise ValueError(f"x has {x2.shape[1]} features but the weight has shape {tuple(shape)} (N, K={k} expected)")
    if bias is not None:
        bias = _checks.float_array(bias, "bias", x)
        _checks.shape(bias, "bias", (n,))
    if residual is not None:
        residual = _checks.rows(_checks.float_array(residual, "residual", x), "residual")
        _checks.shape(residual, "residual", (x2.shape[0], n))
    out = _checks.output(out, "out", x.shape[:-1] + (n,), x.dtype, x)
    return x2, bias, residual, out, _checks.rows(out, "out"), activation_code(activation)


def linear(x, w, bias=None, *, activation=None, residual=None, out=None, n_threads=1):
    """act(x @ w.T + bias) + residual for x (..., K), w (N, K) -> (..., N)."""
    x = _checks.float_array(x, "x")
    w = _checks.float_array(w, "w", x)
    _checks.ndim(w, "w", 2)
    x2, bias, residual, out, out2, act = linear_arguments(x, w.shape, bias, residual, out, activation)
    kernels = _dispatch.kernels(x, _kernels)
    if kernels is None:
        out2[...] = reference.linear(x2, w, bias, act, residual)
    else:
        kernels.linear(x2, w, bias, act, residual, out2, n_threads)
    return out


def batched_matmul(a, b, *, trans_b=False, alpha=1.0, out=None, n_threads=1):
    """alpha * a @ b (b transposed when trans_b) for a (G, M, K); see `reference.batched_matmul`.

    a and b may be strided views whose last axis is contiguous (KV-cache slices): no copy is made."""
    a = _checks.float_array(a, "a", strided_rows=True)
    b = _checks.float_array(b, "b", a, strided_rows=True)
    _checks.ndim(a, "a", 3)
    _checks.ndim(b, "b", 3)
    g, m, k = a.shape
    n = b.shape[1] if trans_b else b.shape[2]
    kb = b.shape[2] if trans_b else b.shape[1]
    if b.shape[0] != g or kb != k:
        layout = "(G, N, K)" if trans_b else "(G, K, N)"
        raise ValueError(f"b has shape {b.shape}, expected {layout} with G={g}, K={k}")
    out = _checks.output(out, "out", (g, m, n), a.dtype, a)
    kernels = _dispatch.kernels(a, _kernels)
    if kernels is None:
        out[...] = reference.batched_matmul(a, b, trans_b, alpha)
    else:
        kernels.batched_matmul(a, b, out, trans_b, alpha, n_threads)
    return out
