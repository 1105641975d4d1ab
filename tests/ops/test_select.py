"""argmax and top-k: native kernels vs reference, exact (indices and values are picked, not computed)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aiotranslate import _native, ops
from aiotranslate.ops import reference

DTYPES = [np.float32, np.float64]

pytestmark = pytest.mark.skipif(_native.load("_select") is None, reason="native kernels not built")

# Few distinct values, so ties are common; NaN, infinities and -0.0 among them.
VALUES = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 1e30, -1e30, np.inf, -np.inf, np.nan])


@st.composite
def rows(draw, max_n=150):
    """(R, N) arrays, N > 0: with k drawn up to N, both top-k paths (heap below N / 16, sort above)."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = (draw(st.integers(0, 4)), draw(st.integers(1, max_n)))
    if draw(st.booleans()):
        return draw(hnp.arrays(dtype, shape, elements=VALUES))
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).integers(-3, 4, shape).astype(dtype)


def assert_topk_equal(x, k, n_threads=1):
    values, indices = ops.topk(x, k, n_threads=n_threads)
    expected_values, expected_indices = reference.topk(x.reshape(-1, x.shape[-1]), k)
    np.testing.assert_array_equal(indices.reshape(expected_indices.shape), expected_indices)
    np.testing.assert_array_equal(values.reshape(expected_values.shape), expected_values)  # NaN == NaN
    assert values.dtype == x.dtype and indices.dtype == np.int32
    return values, indices


# --- argmax ---------------------------------------------------------------------------------------


@given(x=rows())
def test_argmax_matches_reference(x):
    out = ops.argmax(x)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, reference.argmax(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmax_ties_nan_and_inf(dtype):
    nan, inf = np.nan, np.inf
    x = np.array(
        [
            [1, 3, 3, 2],  # tie -> lowest index
            [nan, nan, nan, nan],  # all NaN -> 0
            [nan, -inf, -inf, nan],  # NaN ranks as -inf
            [nan, 1, nan, 1],
            [-inf, -inf, -inf, -inf],
            [-0.0, 0.0, -0.0, 0.0],  # equal
            [inf, nan, inf, 5],
        ],
        dtype,
    )
    np.testing.assert_array_equal(ops.argmax(x), [1, 0, 0, 1, 0, 0, 0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["random", "ascending", "descending"])
def test_argmax_vocab_rows_and_threads(dtype, order):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9, 32001)).astype(dtype)
    if order != "random":
        x.sort(axis=-1)  # ascending: every element is a new maximum, the scan's worst case
        x = np.ascontiguousarray(x[:, ::-1] if order == "descending" else x)
    expected = reference.argmax(x)
    np.testing.assert_array_equal(ops.argmax(x, n_threads=1), expected)
    np.testing.assert_array_equal(ops.argmax(x, n_threads=2), expected)


def test_argmax_strided_read_only_and_any_rank():
    x = np.random.default_rng(8).standard_normal((3, 4, 10))
    x.flags.writeable = False
    np.testing.assert_array_equal(ops.argmax(x[:, :, ::3]), np.argmax(x[:, :, ::3], axis=-1))
    np.testing.assert_array_equal(ops.argmax(x[0, 0]), np.argmax(x[0, 0]))
    assert ops.argmax(np.zeros((0, 5), np.float32)).shape == (0,)


def test_argmax_rejects_bad_inputs():
    with pytest.raises(ValueError):
        ops.argmax(np.zeros((3, 0), np.float32))
    with pytest.raises(TypeError):
        ops.argmax(np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError):
        ops.argmax([[1.0, 2.0]])
    with pytest.raises(ValueError):
        ops.argmax(np.zeros((2, 3)), n_threads=0)


# --- top-k ----------------------------------------------------------------------------------------


@given(x=rows(), data=st.data())
def test_topk_matches_reference(x, data):
    k = data.draw(st.integers(0, x.shape[1]))
    assert_topk_equal(x, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_ties_nan_and_inf(dtype):
    nan, inf = np.nan, np.inf
    x = np.array([[nan, 2, -inf, 2, nan, inf, -0.0, 0.0, -inf]], dtype)
    values, indices = assert_topk_equal(x, 9)
    # Descending; ties (2, 2), (-0.0, 0.0) and (NaN, -inf, NaN, -inf) in index order.
    np.testing.assert_array_equal(indices[0], [5, 1, 3, 6, 7, 0, 2, 4, 8])
    for k in (0, 1, 4, 7):
        assert_topk_equal(x, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [0, 1, 8, 50, 1999, 2000, 32000])  # heap below N / 16, sort above
def test_topk_vocab_rows_and_threads(dtype, k):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 32000)).astype(dtype)
    x[1] = np.round(x[1])  # heavy ties
    x[2].sort()  # ascending: every element enters the heap
    x[3, ::7] = np.nan
    one = assert_topk_equal(x, k, n_threads=1)
    two = assert_topk_equal(x, k, n_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_topk_shapes_strided_and_read_only():
    x = np.random.default_rng(10).standard_normal((2, 3, 40)).astype(np.float32)
    x.flags.writeable = False
    values, indices = ops.topk(x[:, :, ::2], 5)
    assert values.shape == indices.shape == (2, 3, 5)
    assert_topk_equal(x[:, :, ::2], 5)
    assert_topk_equal(x[0, 0], 40)
    assert ops.topk(np.zeros((0, 7)), 3)[0].shape == (0, 3)
    assert ops.topk(np.zeros((4, 0)), 0)[1].shape == (4, 0)


def test_topk_rejects_bad_inputs():
    x = np.zeros((2, 5), np.float32)
    for k in (-1, 6):
        with pytest.raises(ValueError):
            ops.topk(x, k)
    with pytest.raises(TypeError):
        ops.topk(x.astype(np.int64), 1)
    with pytest.raises(ValueError):
        ops.topk(x, 2, n_threads=0)
    kernels = _native.load("_select")
    with pytest.raises(ValueError):
        kernels.topk(x, 2, np.empty((2, 3), np.float32), np.empty((2, 2), np.int32), 1)
