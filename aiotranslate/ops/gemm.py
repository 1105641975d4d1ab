"""Matrix products: `linear` (x @ W.T with a fused bias/activation/residual epilogue) and
`batched_matmul` (the attention products Q @ K^T and P @ V over batch x heads).

The kernels are `native/_gemm.pyx`: BLAS sgemm on per-thread slices of the output for large M,
our own register-blocked kernel for the small-M shapes of decoding. A `PackedWeight` (a weight
transposed once into the panels our outer-product tiles read) runs those tiles for every M, with no
packing per call: the form the models' float32 linear layers take on the CPU (`layers.linear`).

Importing this module holds scipy's own BLAS (the one the kernels call) to one thread; see
`_single_thread_scipy_blas`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import _native
from . import _checks, _dispatch, aligned, reference


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
_LINEAR = _dispatch.by_dtype(_kernels and _kernels.linear)


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


def direct_linear(kernel, x, shape: tuple[int, int], weight_args: tuple, bias, activation, residual, out,
                  n_threads):
    """The new output of kernel(x, *weight_args, bias, act, residual, None, n_threads), a native linear
    of x by a weight of `shape` (N, K), when that call takes the short way (`_dispatch`): a kernel (None
    without the extension), x a 2-D host array of K features, no out given, arguments the kernel takes
    as they are. Otherwise None: the op's checked path runs. Shared by the float and the quantized
    linears (whose kernels see K padded: hence the check here)."""
    if kernel is None or out is not None or type(x) is not np.ndarray or x.ndim != 2 or x.shape[1] != shape[1]:
        return None
    try:
        return kernel(x, *weight_args, bias, reference.ACTIVATIONS[activation], residual, None, n_threads)
    except (*_dispatch.REFUSED, KeyError):  # KeyError: an unknown activation
        return None


def to_panels(a: np.ndarray) -> np.ndarray:
    """The rows of a (N, K) in the kernels' panels (extension built): (ceil(N/64), K, 64) holding
    a[64 t + c, p] at [t, p, c], zero-padded. The layout of `PackedWeight` and of the weight-only int8
    weight (ops.quantized.Int8WeightOnly)."""
    (n, k), width = a.shape, _kernels.PANEL
    panels = -(-n // width)
    padded = np.zeros((panels * width, k), a.dtype)
    padded[:n] = a
    out = aligned.empty((panels, k, width), a.dtype)
    np.copyto(out, padded.reshape(panels, width, k).transpose(0, 2, 1))
    return out


def from_panels(panels: np.ndarray, n: int) -> np.ndarray:
    """The first n rows that `to_panels` packed (a view)."""
    return panels.transpose(0, 2, 1).reshape(-1, panels.shape[1])[:n]


def panel_rows(panels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows `rows` (int64 indices) of what `to_panels` packed, gathered from their panels alone."""
    width = panels.shape[2]
    return panels[rows // width, :, rows % width]


@dataclass(frozen=True, eq=False)
class PackedWeight:
    """A float32 weight W (N, K) packed once for `linear`: data (ceil(N/64), K, 64) holds W[64 t + c, p]
    at [t, p, c], zero-padded: panels of 64 rows, K-major, which the outer-product tiles read as they
    are (native/gemm_kernels.c). Against W itself (`python benchmarks/kernels.py` prints both; one
    run on a Zen 4, 1 and 2 threads): weights in cache 1.0-1.4x at M = 8..32, 1.1x at M = 128..512
    (where BLAS ran), 1.0-1.4x at M = 1; at M = 1 with the weights from memory, as in decoding,
    2.0x (1 thread) and 1.2x (2 threads). Without the extension, data is W."""

    shape: tuple[int, int]
    data: np.ndarray

    @classmethod
    def pack(cls, w: np.ndarray) -> PackedWeight:
        w = _checks.float_array(w, "w", dtype=np.float32)
        _checks.ndim(w, "w", 2)
        data = np.ascontiguousarray(w) if _kernels is None else to_panels(w)
        data.flags.writeable = False  # shared by every worker thread
        return cls(w.shape, data)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def values(self) -> np.ndarray:
        """W (N, K), as `pack` took it."""
        return self.data if _kernels is None else from_panels(self.data, self.shape[0])

    def select(self, rows) -> PackedWeight:
        """The weight of output rows `rows` (in that order), gathered from their panels."""
        rows = _checks.row_indices(rows, self.shape[0])
        return PackedWeight.pack(self.data[rows] if _kernels is None else panel_rows(self.data, rows))


def linear(x, w, bias=None, *, activation=None, residual=None, out=None, n_threads=1):
    """act(x @ w.T + bias) + residual for x (..., K), w (N, K) or a `PackedWeight` -> (..., N)."""
    if type(w) is PackedWeight:
        y = direct_linear(_kernels and _kernels.linear_packed, x, w.shape, (w.data, w.shape[0]), bias, activation,
                          residual, out, n_threads)
    elif type(w) is np.ndarray and w.ndim == 2 and type(x) is np.ndarray:
        y = direct_linear(_LINEAR.get(x.dtype), x, w.shape, (w,), bias, activation, residual, out, n_threads)
    else:
        y = None
    if y is not None:
        return y
    x = _checks.float_array(x, "x")
    if isinstance(w, PackedWeight):
        return _packed_linear(x, w, bias, activation, residual, out, n_threads)
    w = _checks.float_array(w, "w", x)
    _checks.ndim(w, "w", 2)
    x2, bias, residual, out, out2, act = linear_arguments(x, w.shape, bias, residual, out, activation)
    kernels = _dispatch.kernels(x, _kernels)
    if kernels is None:
        out2[...] = reference.linear(x2, w, bias, act, residual)
    else:
        kernels.linear(x2, w, bias, act, residual, out2, n_threads)
    return out


def _packed_linear(x, w: PackedWeight, bias, activation, residual, out, n_threads):
    _checks.host_array(x, "x", "a packed float32 linear")
    x = _checks.float_array(x, "x", dtype=np.float32)
    x2, bias, residual, out, out2, act = linear_arguments(x, w.shape, bias, residual, out, activation)
    if _kernels is None:
        out2[...] = reference.linear(x2, w.data, bias, act, residual)
    else:
        _kernels.linear_packed(x2, w.data, w.shape[0], bias, act, residual, out2, n_threads)
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
