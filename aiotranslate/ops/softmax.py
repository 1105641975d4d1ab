"""softmax and log_softmax over the last axis, with scale, additive mask, lengths and causal masking;
logsumexp of each row.

The masking contract is `reference.softmax`'s; the kernel is `native/_softmax.pyx`.
"""

from __future__ import annotations

import numpy as np

from .. import _native
from . import _checks, _dispatch, reference

_kernels = _native.load("_softmax")
_SOFTMAX = _dispatch.by_dtype(_kernels and _kernels.softmax)


def softmax(x, *, scale=1.0, mask=None, lengths=None, causal_q=0, out=None, n_threads=1, log=False):
    """Softmax of scale * x + mask over the last axis of x (..., N); see `reference.softmax`."""
    if out is None and mask is None and lengths is None and not causal_q:  # the short way
        y = _dispatch.direct(_SOFTMAX, x, None, scale, None, None, 0, log, n_threads)
        if y is not None:
            return y
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    r, n = x2.shape
    if mask is not None:
        mask = _checks.rows(_checks.float_array(mask, "mask", x), "mask")
        if mask.shape[1] != n or mask.shape[0] == 0 or r % mask.shape[0]:
            raise ValueError(f"mask of shape {mask.shape} does not tile rows of shape ({r}, {n})")
    lengths = _checks.masking(lengths, causal_q, r, n, x)
    out = _checks.output(out, "out", x.shape, x.dtype, x)
    kernels = _dispatch.kernels(x, _kernels)
    if kernels is None:
        out[...] = reference.softmax(x2, scale, mask, lengths, causal_q, log).reshape(x.shape)
    else:
        kernels.softmax(x2, _checks.rows(out, "out"), scale, mask, lengths, causal_q, log, n_threads)
    return out


def log_softmax(x, **kwargs):
    """log of `softmax` (same arguments), computed stably: masked columns are -inf."""
    return softmax(x, log=True, **kwargs)


def logsumexp(x, *, n_threads=1):
    """float64 log(sum(exp(x))) over the last axis of host x (..., N) -> (...); see `reference.logsumexp`.
    log_softmax(x)[..., j] = x[..., j] - logsumexp(x): one token's log-probability without a row of them."""
    _checks.host_array(x, "x", "logsumexp")
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    out = np.empty(x2.shape[0], dtype=np.float64)
    if _kernels is None:
        out[...] = reference.logsumexp(x2)
    else:
        _kernels.logsumexp(x2, out, n_threads)
    return out.reshape(x.shape[:-1])
