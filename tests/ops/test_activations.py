"""activation (with fused bias) and swiglu: native kernels against ops.reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiotranslate import ops
from aiotranslate.ops import reference

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
NAMES = ["none", "relu", "gelu", "gelu_tanh", "silu"]


def assert_matches(actual, expected, z):
    """Within RTOL, plus a few float64 ulps of |z| absolutely: where gelu's 1 + erf or 1 + tanh cancels
    (z << 0) the float64 reference itself is only that accurate."""
    dtype = z.dtype.type
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    tol = 4 * np.finfo(np.float64).eps * np.abs(z.astype(np.float64)) + RTOL[dtype] * np.abs(e)
    with np.errstate(invalid="ignore"):  # inf - inf: equal infinities pass through a == e
        assert ((a == e) | (np.abs(a - e) <= tol)).all()
    assert not np.isnan(actual).any()


def expected_of(x, name, bias=None):
    z = x if bias is None else (x.astype(np.float64) + bias).astype(x.dtype)
    return z, reference.activation(z, reference.ACTIVATIONS[name])


@given(
    name=st.sampled_from(NAMES),
    dtype=st.sampled_from(DTYPES),
    rows=st.integers(0, 5),
    cols=st.integers(0, 100),
    seed=st.integers(0, 2**32 - 1),
    spread=st.sampled_from([1.0, 4.0, 30.0]),
    with_bias=st.booleans(),
)
def test_matches_reference(name, dtype, rows, cols, seed, spread, with_bias):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * spread).astype(dtype)
    bias = rng.standard_normal(cols).astype(dtype) if with_bias else None
    z, expected = expected_of(x, name, bias)
    assert_matches(ops.activation(x, name, bias=bias), expected, z)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_range_and_special_values(name, dtype):
    """Dense sweep over [-100, 100] (tails, the exp under/overflow edges) plus +-0 and +inf."""
    x = np.concatenate([np.linspace(-100, 100, 20001), [0.0, -0.0, np.inf]]).astype(dtype)[None]
    z, expected = expected_of(x, name)
    assert_matches(ops.activation(x, name), expected, np.where(np.isinf(z), 0, z))


@pytest.mark.parametrize("name", NAMES)
def test_in_place_with_bias_nd_and_strided(name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 40)).astype(np.float32)
    bias = rng.standard_normal(40).astype(np.float32)
    z, expected = expected_of(x.reshape(-1, 40), name, bias)
    buf = x.copy()
    assert ops.activation(buf, name, bias=bias, out=buf) is buf  # out is x: rewritten in place
    assert_matches(buf.reshape(-1, 40), expected, z)
    strided = np.repeat(x, 2, axis=-1)[..., ::2]
    strided.flags.writeable = False
    assert_matches(ops.activation(strided, name, bias=bias).reshape(-1, 40), expected, z)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 4), (3, 0), (1, 2), (3, 34), (2, 1030)])
def test_swiglu(dtype, shape):
    x = (np.random.default_rng(2).standard_normal(shape) * 4).astype(dtype)
    gate = x[:, : shape[1] // 2]
    assert_matches(ops.swiglu(x), reference.swiglu(x), gate * x[:, shape[1] // 2 :])


def test_swiglu_nd_read_only_into_out():
    x = np.random.default_rng(3).standard_normal((2, 5, 12))
    x.flags.writeable = False
    out = np.empty((2, 5, 6))
    assert ops.swiglu(x, out=out) is out
    f = x.reshape(-1, 12)
    assert_matches(out.reshape(-1, 6), reference.swiglu(f), f[:, :6] * f[:, 6:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_a_bit(dtype):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((64, 1000)) * 3).astype(dtype)  # above the grain: really two threads
    bias = rng.standard_normal(1000).astype(dtype)
    for name in NAMES[1:]:
        one = ops.activation(x, name, bias=bias, n_threads=1)
        assert one.tobytes() == ops.activation(x, name, bias=bias, n_threads=2).tobytes()
    assert ops.swiglu(x, n_threads=1).tobytes() == ops.swiglu(x, n_threads=2).tobytes()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda x: ops.activation(x, "tanh"), ValueError),
        (lambda x: ops.activation(x, "gelu", bias=np.zeros(3)), ValueError),
        (lambda x: ops.activation(x, "gelu", bias=np.zeros(4, np.float32)), TypeError),
        (lambda x: ops.activation(x, "gelu", out=np.empty((2, 4), np.float32)), TypeError),
        (lambda x: ops.activation(x, "gelu", out=np.empty((4, 2))), ValueError),
        (lambda x: ops.activation(x.astype(np.int64), "relu"), TypeError),
        (lambda x: ops.activation(x, "silu", n_threads=0), ValueError),
        (lambda x: ops.swiglu(x[:, :3]), ValueError),
        (lambda x: ops.swiglu(x, out=np.empty((2, 4))), ValueError),
        (lambda x: ops.swiglu(x.tolist()), TypeError),
    ],
)
def test_bad_arguments_raise(call, error):
    with pytest.raises(error):
        call(np.zeros((2, 4)))
