"""softmax / log_softmax: the native kernel against ops.reference, through the public ops wrapper."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops import reference

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


def assert_matches(actual, expected, dtype, z_max=0.0):
    """Within RTOL elementwise; -inf and 0 (masked columns) must match exactly.

    log_softmax near 0 is z - m - log(s) with z ~ m and s ~ 1, so both sides are only accurate to
    a few ulps of max |z| absolutely: z_max gives that scale.
    """
    atol = 8 * np.finfo(dtype).eps * z_max
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=atol)
    assert not np.isnan(actual).any()


def logit_scale(x, scale=1.0, mask=None, **_):
    """max |scale * x + mask| over finite entries, at least 1: the absolute scale of log_softmax errors."""
    z = np.abs(scale * x.astype(np.float64))
    if mask is not None:
        z = z + np.abs(np.tile(np.where(np.isfinite(mask), mask, 0), (len(x) // len(mask), 1)))
    return max(1.0, float(np.max(z, initial=0, where=np.isfinite(z))))


@st.composite
def softmax_cases(draw):
    """Rows of B x H x Q queries, so lengths (per batch), mask rows and causal_q can all tile them."""
    b, h, q = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    n = draw(st.integers(q, 70))
    r = b * h * q
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(DTYPES))
    x = (rng.standard_normal((r, n)) * 3).astype(dtype)
    kwargs = {"scale": draw(st.sampled_from([1.0, 0.125, 2.0])), "log": draw(st.booleans())}
    if draw(st.booleans()):
        rows = draw(st.sampled_from([1, q, h * q, r]))
        mask = rng.standard_normal((rows, n))
        mask[rng.random((rows, n)) < draw(st.sampled_from([0.0, 0.3, 1.0]))] = -np.inf
        kwargs["mask"] = mask.astype(dtype)
    if draw(st.booleans()):
        kwargs["lengths"] = rng.integers(0, n + 2, size=b).astype(np.int32)
    if draw(st.booleans()):
        kwargs["causal_q"] = q
    return x, kwargs


@given(softmax_cases())
def test_matches_reference(case):
    x, kwargs = case
    expected = reference.softmax(x, **kwargs)
    assert_matches(ops.softmax(x, **kwargs), expected, x.dtype.type, logit_scale(x, **kwargs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (1, 1), (2, 17), (3, 33), (1, 1029)])
@pytest.mark.parametrize("log", [False, True])
def test_edge_shapes(dtype, shape, log):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    assert_matches(ops.softmax(x, log=log), reference.softmax(x, log=log), dtype, logit_scale(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_fully_masked_rows_are_zero_never_nan(dtype, log):
    x = np.random.default_rng(1).standard_normal((4, 40)).astype(dtype)
    mask = np.zeros((4, 40), dtype)
    mask[1] = -np.inf  # every column masked
    x[2] = -np.inf  # logits themselves -inf
    lengths = np.array([40, 40, 40, 0], np.int32)  # row 3: nothing visible
    out = ops.softmax(x, mask=mask, lengths=lengths, log=log)
    empty = -np.inf if log else 0.0
    assert (out[1:] == empty).all()
    expected = reference.softmax(x, mask=mask, lengths=lengths, log=log)
    assert_matches(out, expected, dtype, logit_scale(np.where(np.isfinite(x), x, 0)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_are_stable(dtype):
    x = np.array([[1000.0, 999.0, -1000.0, 0.0], [-1e4, -1e4 - 1, -2e4, -1e4]], dtype)
    for log in (False, True):
        assert_matches(ops.softmax(x, log=log), reference.softmax(x, log=log), dtype, 2e4)


def test_nd_input_strided_and_read_only():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5, 18)).astype(np.float32)[..., ::2]  # (B, H, T, S), strided
    x.flags.writeable = False
    mask = rng.standard_normal((5, 9)).astype(np.float32)
    mask.flags.writeable = False
    out = ops.softmax(x, mask=mask, lengths=[9, 4], causal_q=5, scale=0.5)
    expected = reference.softmax(x.reshape(-1, 9), 0.5, mask, np.array([9, 4]), 5).reshape(x.shape)
    assert_matches(out, expected, np.float32)


def test_writes_into_out_or_in_place():
    x = np.random.default_rng(3).standard_normal((3, 7))
    out = np.full_like(x, np.nan)
    assert ops.log_softmax(x, out=out) is out
    assert_matches(out, reference.softmax(x, log=True), np.float64, logit_scale(x))
    expected = reference.softmax(x)
    assert ops.softmax(x, out=x) is x
    assert_matches(x, expected, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_thread_count_does_not_change_a_bit(dtype, log):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 1000)).astype(dtype)  # above the grain: really two threads
    mask = np.where(rng.random((8, 1000)) < 0.1, -np.inf, 0.0).astype(dtype)
    kwargs = {"mask": mask, "lengths": rng.integers(0, 1001, 4), "causal_q": 8, "log": log}
    one = ops.softmax(x, n_threads=1, **kwargs)
    assert one.tobytes() == ops.softmax(x, n_threads=2, **kwargs).tobytes()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"mask": np.zeros((4, 5))}, ValueError),  # 4 mask rows do not tile 6 rows
        ({"mask": np.zeros((6, 4))}, ValueError),
        ({"mask": np.zeros((6, 5), np.float32)}, TypeError),
        ({"lengths": [1, 2, 3, 4]}, ValueError),
        ({"lengths": [1.0, 2.0]}, TypeError),
        ({"causal_q": 4}, ValueError),
        ({"causal_q": 6}, ValueError),  # more queries than keys
        ({"out": np.empty((6, 4))}, ValueError),
        ({"out": np.empty((6, 5), np.float32)}, TypeError),
        ({"n_threads": 0}, ValueError),
    ],
)
def test_bad_arguments_raise(kwargs, error):
    with pytest.raises(error):
        ops.softmax(np.zeros((6, 5)), **kwargs)


def test_bad_dtypes_raise():
    with pytest.raises(TypeError):
        ops.softmax(np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError):
        ops.softmax([[1.0, 2.0]])


@pytest.mark.skipif(load("_softmax") is None, reason="native kernels not built")
def test_kernel_checks_shapes_itself():
    """Called directly (no wrapper), the kernel still refuses shapes that would overrun a buffer."""
    kernel = load("_softmax")
    x = np.zeros((4, 5))
    with pytest.raises(ValueError):
        kernel.softmax(x, np.empty((4, 4)), 1.0, None, None, 0, False, 1)
    with pytest.raises(ValueError):
        kernel.softmax(x, np.empty((4, 5)), 1.0, np.zeros((3, 5)), None, 0, False, 1)
    with pytest.raises(ValueError):
        kernel.softmax(x, np.empty((4, 5)), 1.0, None, np.zeros(3, np.int32), 0, False, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_nan_in_nan_out(dtype, log):
    """A NaN (either sign) or +inf among a row's visible logits makes its visible outputs NaN, in the
    kernel and the reference alike; masked columns keep 0 (log: -inf), and a NaN that is masked off
    changes nothing."""
    x = np.random.default_rng(5).standard_normal((7, 37)).astype(dtype)
    x[0, 3] = np.nan
    x[1, 36] = -np.nan  # sign bit set: below -inf in the kernel's integer order of floats
    x[2, 0] = np.inf
    x[3, :] = -np.inf
    x[3, 9] = np.nan  # NaN among -inf only: the max
    x[4, :] = -np.inf
    x[4, 9] = -np.nan  # -NaN among -inf only: the max is -inf, yet the row is not empty
    x[5, 30] = np.nan  # past this row's length: masked, ignored
    lengths = np.array([20, 37, 37, 37, 37, 25, 37], np.int32)
    out = ops.softmax(x, lengths=lengths, log=log)
    expected = reference.softmax(x, lengths=lengths, log=log)
    visible = np.arange(37)[None, :] < lengths[:, None]
    assert np.isnan(out[:5][visible[:5]]).all()
    assert (out[0, 20:] == (-np.inf if log else 0.0)).all()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert not np.isnan(out[5:]).any()
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=RTOL[dtype], atol=8 * np.finfo(dtype).eps * 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (1, 1), (2, 17), (3, 33), (4, 1029), (2, 3, 50)])
def test_logsumexp_matches_reference_and_log_softmax(dtype, shape):
    x = (np.random.default_rng(6).standard_normal(shape) * 5).astype(dtype)
    out = ops.logsumexp(x)
    assert out.shape == shape[:-1] and out.dtype == np.float64
    rows = x.reshape(math.prod(shape[:-1]), shape[-1])
    np.testing.assert_allclose(out, reference.logsumexp(rows).reshape(shape[:-1]), rtol=RTOL[dtype])
    # x - logsumexp(x) is log_softmax(x): how greedy search scores its token
    log_softmax = reference.softmax(rows, log=True).reshape(shape)
    np.testing.assert_allclose(x - out[..., None], log_softmax, rtol=RTOL[dtype], atol=8 * np.finfo(dtype).eps * 20)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_special_rows(dtype):
    x = np.zeros((7, 40), dtype)
    x[0, :] = -np.inf  # empty sum: -inf
    x[1, 5] = np.nan
    x[2, 7] = -np.nan
    x[3, 1] = np.inf  # +inf alone: +inf
    x[4, 1], x[4, 2] = np.inf, -np.nan  # NaN wins
    x[5, :] = -np.inf
    x[5, 3] = -np.nan  # among -inf only
    x[6] = np.array([1000.0, -1000.0] * 20, dtype)  # stable with large values
    out = ops.logsumexp(x)
    expected = [-np.inf, np.nan, np.nan, np.inf, np.nan, np.nan, 1000.0 + np.log(20.0)]
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype])
    np.testing.assert_allclose(out, reference.logsumexp(x), rtol=RTOL[dtype])


def test_logsumexp_thread_count_does_not_change_a_bit():
    x = np.random.default_rng(7).standard_normal((64, 1000)).astype(np.float32)  # above the grain
    assert ops.logsumexp(x, n_threads=1).tobytes() == ops.logsumexp(x, n_threads=2).tobytes()


def test_logsumexp_bad_arguments_raise():
    with pytest.raises(TypeError):
        ops.logsumexp(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError):
        ops.logsumexp(np.zeros((2, 3)), n_threads=0)
