"""layer_norm and rms_norm over the last axis, optionally fused with the residual add.

With `residual`, the kernel adds x into `residual` in place (the residual stream of a pre-norm block)
and normalises the sum: one pass instead of two. Kernels: `native/_norms.pyx`.
"""

from __future__ import annotations

from .. import _native
from . import _checks, _dispatch, reference

_kernels = _native.load("_norms")
_LAYER_NORM = _dispatch.by_dtype(_kernels and _kernels.layer_norm)
_RMS_NORM = _dispatch.by_dtype(_kernels and _kernels.rms_norm)


def _prepare(x, gamma, beta, residual, out):
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    c = x2.shape[1]
    gamma = _checks.float_array(gamma, "gamma", x)
    _checks.shape(gamma, "gamma", (c,))
    if beta is not None:
        beta = _checks.float_array(beta, "beta", x)
        _checks.shape(beta, "beta", (c,))
    if residual is not None:
        # Updated in place, so no silent contiguous copy: it must already be writable C-contiguous.
        residual = _checks.output(residual, "residual", x.shape, x.dtype, x)
        residual = _checks.rows(residual, "residual")
    out = _checks.output(out, "out", x.shape, x.dtype, x)
    return x2, gamma, beta, residual, out, _dispatch.kernels(x, _kernels)


def layer_norm(x, gamma, beta=None, *, eps=1e-5, residual=None, out=None, n_threads=1):
    """(s - mean) / sqrt(var + eps) * gamma + beta with s = x, or s = residual += x."""
    if out is None:  # the short way
        y = _dispatch.direct(_LAYER_NORM, x, gamma, beta, eps, residual, None, n_threads)
        if y is not None:
            return y
    x2, gamma, beta, residual, out, kernels = _prepare(x, gamma, beta, residual, out)
    if kernels is None:
        y, s = reference.layer_norm(x2, gamma, beta, eps, residual)
        if residual is not None:
            residual[...] = s
        out[...] = y.reshape(out.shape)
    else:
        kernels.layer_norm(x2, gamma, beta, eps, residual, _checks.rows(out, "out"), n_threads)
    return out


def rms_norm(x, gamma, *, eps=1e-6, residual=None, out=None, n_threads=1):
    """s / sqrt(mean(s^2) + eps) * gamma with s = x, or s = residual += x."""
    if out is None:  # the short way
        y = _dispatch.direct(_RMS_NORM, x, gamma, eps, residual, None, n_threads)
        if y is not None:
            return y
    x2, gamma, _, residual, out, kernels = _prepare(x, gamma, None, residual, out)
    if kernels is None:
        y, s = reference.rms_norm(x2, gamma, eps, residual)
        if residual is not None:
            residual[...] = s
        out[...] = y.reshape(out.shape)
    else:
        kernels.rms_norm(x2, gamma, eps, residual, _checks.rows(out, "out"), n_threads)
    return out
