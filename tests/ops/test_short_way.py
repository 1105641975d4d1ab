"""The short way of the common call (`ops._dispatch`): a 2-D host x and no `out` go straight to the
kernel, whose typed arguments and own checks are the checks. The common call must take it (with the
checked path made to fail) and compute what the checked path computes (given `out=`, an op always
takes the checked path), and whatever the kernel refuses must still get the op's own error, or its
conversion (a strided x is copied, int64 lengths are cast)."""

import numpy as np
import pytest

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops.quantized import BF16Weight, Int8BlockWeight, Int8WeightOnly, IntgemmInput

needs_native = pytest.mark.skipif(load("_gemm") is None or load("_qgemm") is None, reason="native kernels not built")
pytestmark = needs_native

RNG = np.random.default_rng(7)
X = RNG.standard_normal((3, 64)).astype(np.float32)
W = RNG.standard_normal((70, 64)).astype(np.float32)
BIAS = RNG.standard_normal(70).astype(np.float32)
RESIDUAL = RNG.standard_normal((3, 70)).astype(np.float32)


def _static(x, weight, bias=None, **kwargs):
    """int8_linear_static with the prepared input of `weight` (its bias goes into the preparation)."""
    prep = IntgemmInput.prepare(weight, 13.7, np.ones(weight.shape[0], np.float32), bias)
    return ops.quantized.int8_linear_static(x, weight, prep, **kwargs)


LINEARS = {
    "plain": (ops.linear, lambda w: w),
    "packed": (ops.linear, ops.PackedWeight.pack),
    "int8": (ops.int8_linear, ops.Int8Weight.quantize),
    "int8 blocks": (ops.int8_linear, Int8BlockWeight.quantize),
    "int8 weight-only": (ops.int8_linear, Int8WeightOnly.quantize),
    "int8 static": (_static, ops.Int8Weight.quantize),
    "bfloat16": (ops.bf16_linear, BF16Weight.from_float),
}


@pytest.fixture(params=list(LINEARS))
def linear(request):
    op, make = LINEARS[request.param]
    return op, make(W)


def _checked_path_fails(monkeypatch):
    """Make every op's checked path fail (they all check their input with float_array): a call that
    still succeeds took the short way."""

    def taken(*args, **kwargs):
        raise AssertionError("the checked path ran")

    monkeypatch.setattr(ops._checks, "float_array", taken)


def test_linear_short_way_equals_the_checked_path(linear, monkeypatch):
    """The short way's kernel makes its own output (out=None): a new C-contiguous array of the right
    shape and dtype, empty rows included."""
    op, weight = linear
    for rows, kwargs in ((3, {}), (3, {"activation": "gelu", "residual": RESIDUAL}), (1, {}), (0, {})):
        checked = op(X[:rows], weight, BIAS, out=np.full((rows, 70), np.nan, np.float32), **kwargs)
        with monkeypatch.context() as patch:
            _checked_path_fails(patch)
            short = op(X[:rows], weight, BIAS, **kwargs)
        assert short.shape == (rows, 70) and short.flags.c_contiguous and short.flags.owndata
        np.testing.assert_array_equal(short, checked)


def test_float64_linear_short_way_equals_the_checked_path(monkeypatch):
    x, w, bias = X.astype(np.float64), W.astype(np.float64), BIAS.astype(np.float64)
    checked = ops.linear(x, w, bias, activation="silu", out=np.empty((3, 70)))
    with monkeypatch.context() as patch:
        _checked_path_fails(patch)
        short = ops.linear(x, w, bias, activation="silu")
    assert short.dtype == np.float64
    np.testing.assert_array_equal(short, checked)


def test_linear_refusals_keep_the_ops_errors_and_conversions(linear):
    op, weight = linear
    expected = op(X, weight, BIAS)
    strided = np.zeros((3, 128), np.float32)
    strided[:, ::2] = X
    np.testing.assert_array_equal(op(strided[:, ::2], weight, BIAS), expected)  # copied, as before
    np.testing.assert_array_equal(op(X[None], weight, BIAS)[0], expected)  # (..., K)
    with pytest.raises(ValueError, match="features"):
        op(X[:, :63], weight, BIAS)  # K - 1: int8's padded K would be the same
    if op is not _static:  # (there, IntgemmInput.prepare takes the bias in)
        with pytest.raises(TypeError, match="bias"):
            op(X, weight, BIAS.astype(np.float64))
    with pytest.raises(ValueError, match="residual"):
        op(X, weight, BIAS, residual=RESIDUAL[:2])
    with pytest.raises(ValueError, match="unknown activation"):
        op(X, weight, BIAS, activation="tanh")
    with pytest.raises(TypeError, match="x"):
        op(X.astype(np.float16), weight, BIAS)
    with pytest.raises(ValueError, match="n_threads"):
        op(X, weight, BIAS, n_threads=0)


@pytest.mark.parametrize("name", ["layer_norm", "rms_norm"])
def test_norm_short_way_equals_the_checked_path_and_keeps_its_errors(name):
    norm = getattr(ops, name)
    gamma = RNG.standard_normal(64).astype(np.float32)
    short_residual, checked_residual = X.copy(), X.copy()
    checked = norm(X * 2, gamma, residual=checked_residual, out=np.empty_like(X))
    with pytest.MonkeyPatch.context() as patch:
        _checked_path_fails(patch)
        short = norm(X * 2, gamma, residual=short_residual)
    np.testing.assert_array_equal(short, checked)
    np.testing.assert_array_equal(short_residual, checked_residual)  # both added x in place
    read_only = X.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        norm(X, gamma, residual=read_only)  # updated in place: never a silent copy
    with pytest.raises(ValueError, match="gamma"):
        norm(X, gamma[:63])
    with pytest.raises(TypeError, match="gamma"):
        norm(X, gamma.astype(np.float64))


def test_attention_short_way_equals_the_checked_path_and_keeps_its_errors():
    q, k, v = (RNG.standard_normal(shape).astype(np.float32) for shape in ((4, 2, 16), (4, 9, 16), (4, 9, 16)))
    lengths = np.array([9, 5, 1, 0], np.int32)
    checked = ops.attention(q, k, v, scale=0.25, lengths=lengths, out=np.empty_like(q))
    with pytest.MonkeyPatch.context() as patch:
        _checked_path_fails(patch)
        short = ops.attention(q, k, v, scale=0.25, lengths=lengths, n_threads=2)
    np.testing.assert_array_equal(short, checked)
    # int64 lengths: refused by the kernel's int32 view, cast by the checked path
    np.testing.assert_array_equal(ops.attention(q, k, v, scale=0.25, lengths=lengths.astype(np.int64)), short)
    with pytest.raises(ValueError, match="do not fit"):
        ops.attention(q, k[:, :, :8], v, scale=0.25)
    with pytest.raises(ValueError, match="lengths do not divide"):
        ops.attention(q, k, v, scale=0.25, lengths=lengths[:3])
    with pytest.raises(TypeError, match="dtype"):
        ops.attention(q, k.astype(np.float64), v, scale=0.25)


def test_swiglu_short_way_equals_the_checked_path_and_keeps_its_errors():
    checked = ops.swiglu(X, out=np.empty((3, 32), np.float32))
    with pytest.MonkeyPatch.context() as patch:
        _checked_path_fails(patch)
        short = ops.swiglu(X)
    np.testing.assert_array_equal(short, checked)
    with pytest.raises(ValueError, match="even"):
        ops.swiglu(X[:, :63])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_short_way_equals_the_checked_path_and_keeps_its_errors(dtype, log):
    x = (X * 3).astype(dtype)
    checked = ops.softmax(x, scale=0.5, log=log, out=np.empty_like(x))
    with pytest.MonkeyPatch.context() as patch:
        _checked_path_fails(patch)
        short = ops.softmax(x, scale=0.5, log=log, n_threads=2)
    assert short.dtype == dtype
    np.testing.assert_array_equal(short, checked)
    strided = np.zeros((3, 128), dtype)
    strided[:, ::2] = x
    np.testing.assert_array_equal(ops.softmax(strided[:, ::2], scale=0.5, log=log), checked)  # copied
    with pytest.raises(ValueError, match="n_threads"):
        ops.softmax(x, n_threads=0)
    with pytest.raises(TypeError, match="x"):
        ops.softmax(x.astype(np.float16))


def test_activation_short_way_equals_the_checked_path_and_keeps_its_errors():
    bias = RNG.standard_normal(64).astype(np.float32)
    checked = ops.activation(X, "gelu_tanh", bias=bias, out=np.empty_like(X))
    with pytest.MonkeyPatch.context() as patch:
        _checked_path_fails(patch)
        short = ops.activation(X, "gelu_tanh", bias=bias, n_threads=2)
    np.testing.assert_array_equal(short, checked)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.activation(X, "tanh")
    with pytest.raises(ValueError, match="bias"):
        ops.activation(X, "relu", bias=bias[:63])
    with pytest.raises(TypeError, match="bias"):
        ops.activation(X, "relu", bias=bias.astype(np.float64))


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm", "swiglu", "attention", "softmax", "log_softmax", "gelu"])
def test_short_way_outputs_are_new_arrays_of_any_size(op):
    """The kernels make the short way's output (out=None), empty ones included."""
    gamma = np.ones(64, np.float32)
    calls = {
        "layer_norm": lambda x: ops.layer_norm(x, gamma),
        "rms_norm": lambda x: ops.rms_norm(x, gamma),
        "swiglu": ops.swiglu,
        "attention": lambda x: ops.attention(x[None], x[None], x[None], scale=0.125)[0],
        "softmax": ops.softmax,
        "log_softmax": ops.log_softmax,
        "gelu": lambda x: ops.activation(x, "gelu"),
    }
    for rows in (0, 1, 3):
        x = X[:rows]
        expected = {"swiglu": (rows, 32)}.get(op, (rows, 64))
        with pytest.MonkeyPatch.context() as patch:
            _checked_path_fails(patch)
            y = calls[op](x)
        assert y.shape == expected and y.dtype == np.float32 and y.flags.c_contiguous
        assert np.isfinite(y).all()


def test_attention_short_way_over_no_keys_is_zero():
    q, keys = X[None], np.empty((1, 0, 64), np.float32)
    with pytest.MonkeyPatch.context() as patch:
        _checked_path_fails(patch)
        y = ops.attention(q, keys, keys, scale=0.125)
    np.testing.assert_array_equal(y, np.zeros_like(q))
