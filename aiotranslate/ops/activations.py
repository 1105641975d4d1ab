"""Elementwise activations with a fused bias add, and swiglu. Kernels: `native/_activations.pyx`.

`out` may be `x` itself: the kernels read each element before writing it.
"""

from __future__ import annotations

from .. import _native
from . import _checks, _dispatch, reference
from .gemm import activation_code

_kernels = _native.load("_activations")
_SWIGLU = _dispatch.by_dtype(_kernels and _kernels.swiglu)
_ACTIVATION = _dispatch.by_dtype(_kernels and _kernels.bias_activation)


def activation(x, activation, *, bias=None, out=None, n_threads=1):
    """act(x + bias) for x (..., C), bias (C,); activation is a name ("gelu", "silu", ...)."""
    if out is None:  # the short way; an unknown activation gets code -1, which the kernel refuses
        known = activation is None or isinstance(activation, str)
        code = reference.ACTIVATIONS.get(activation, -1) if known else -1
        y = _dispatch.direct(_ACTIVATION, x, bias, code, None, n_threads)
        if y is not None:
            return y
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    if bias is not None:
        bias = _checks.float_array(bias, "bias", x)
        _checks.shape(bias, "bias", (x2.shape[1],))
    act = activation_code(activation)
    out = _checks.output(out, "out", x.shape, x.dtype, x)
    kernels = _dispatch.kernels(x, _kernels)
    if kernels is None:
        z = x2 if bias is None else (x2 + bias).astype(x.dtype)
        out[...] = reference.activation(z, act).reshape(out.shape)
    else:
        kernels.bias_activation(x2, bias, act, _checks.rows(out, "out"), n_threads)
    return out


def swiglu(x, *, out=None, n_threads=1):
    """silu(x[..., :F]) * x[..., F:] for x (..., 2F) -> (..., F): gate and up from one fused GEMM."""
    if out is None:  # the short way
        y = _dispatch.direct(_SWIGLU, x, None, n_threads)
        if y is not None:
            return y
    x = _checks.float_array(x, "x")
    x2 = _checks.rows(x, "x")
    if x2.shape[1] % 2:
        raise ValueError(f"swiglu needs an even last dimension (gate and up halves), got {x.shape}")
    f = x2.shape[1] // 2
    out = _checks.output(out, "out", x.shape[:-1] + (f,), x.dtype, x)
    kernels = _dispatch.kernels(x, _kernels)
    if kernels is None:
        out[...] = reference.swiglu(x2).reshape(out.shape)
    else:
        kernels.swiglu(x2, _checks.rows(out, "out"), n_threads)
    return out
