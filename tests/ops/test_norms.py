"""layer_norm / rms_norm (and their residual fusion): native kernels against ops.reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiotranslate import ops
from aiotranslate.ops import reference

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


def assert_matches(actual, expected, dtype, offset=0.0):
    # atol: outputs that cancel to ~0 in (s - mean) * gamma + beta are only accurate absolutely, to
    # within the rounding of x - mean, which grows with the rows' offset from zero
    atol = RTOL[dtype] * 1e-2 * (1 + abs(offset))
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=atol)


def inputs(rng, shape, dtype, offset=0.0):
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    gamma = rng.standard_normal(shape[-1]).astype(dtype)
    beta = rng.standard_normal(shape[-1]).astype(dtype)
    return x, gamma, beta


def run(kind, x, gamma, beta, residual=None, **kwargs):
    """(native out, reference out): with a residual, the kernel adds x into it in place and the
    contract is out = norm(updated residual); the update is checked bitwise against the reference."""
    if residual is not None:
        updated = (residual.astype(np.float64) + x).astype(x.dtype)  # the reference's residual stream
    if kind == "layer_norm":
        out = ops.layer_norm(x, gamma, beta, residual=residual, **kwargs)
    else:
        out = ops.rms_norm(x, gamma, residual=residual, **kwargs)
    if residual is not None:
        np.testing.assert_array_equal(residual, updated)
        x = residual
    if kind == "layer_norm":
        return out, reference.layer_norm(x, gamma, beta, 1e-5)[0]
    return out, reference.rms_norm(x, gamma, 1e-6)[0]


@given(
    kind=st.sampled_from(["layer_norm", "rms_norm"]),
    dtype=st.sampled_from(DTYPES),
    rows=st.integers(0, 6),
    cols=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    with_beta=st.booleans(),
    with_residual=st.booleans(),
    offset=st.sampled_from([0.0, 3.0, -50.0]),
)
def test_matches_reference(kind, dtype, rows, cols, seed, with_beta, with_residual, offset):
    rng = np.random.default_rng(seed)
    x, gamma, beta = inputs(rng, (rows, cols), dtype, offset)
    residual = rng.standard_normal((rows, cols)).astype(dtype) if with_residual else None
    out, expected = run(kind, x, gamma, beta if with_beta else None, residual)
    assert_matches(out, expected, dtype, offset)


@pytest.mark.parametrize("kind", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 8), (1, 1), (2, 15), (3, 33), (1, 4099)])
def test_edge_shapes(kind, dtype, shape):
    x, gamma, beta = inputs(np.random.default_rng(0), shape, dtype)
    out, expected = run(kind, x, gamma, beta)
    assert_matches(out, expected, dtype)


def test_empty_rows():
    x = np.zeros((3, 0), np.float32)
    assert ops.layer_norm(x, np.ones(0, np.float32), residual=x.copy()).shape == (3, 0)
    assert ops.rms_norm(x, np.ones(0, np.float32)).shape == (3, 0)


def test_variance_of_offset_rows_has_no_cancellation():
    """mean >> std: a one-pass E[s^2] - mean^2 in float64 would lose digits; two passes do not."""
    rng = np.random.default_rng(1)
    x = (1e4 + rng.standard_normal((4, 512)) * 1e-2).astype(np.float32)
    gamma = np.ones(512, np.float32)
    out, expected = run("layer_norm", x, gamma, None)
    assert_matches(out, expected, np.float32)


@pytest.mark.parametrize("kind", ["layer_norm", "rms_norm"])
def test_in_place_and_nd_read_only_strided_inputs(kind):
    rng = np.random.default_rng(2)
    x, gamma, beta = inputs(rng, (2, 3, 64), np.float64)
    gamma_strided = np.repeat(gamma, 2)[::2]
    gamma_strided.flags.writeable = False
    _, expected = run(kind, x, gamma, beta)
    buf = x.copy()
    out = run(kind, buf, gamma_strided, beta, out=buf)[0]  # out is x: normalised in place
    assert out is buf
    assert_matches(buf, expected, np.float64)
    x.flags.writeable = False
    assert_matches(run(kind, x[..., ::-1], gamma, beta)[0], run(kind, x[..., ::-1].copy(), gamma, beta)[1],
                   np.float64)


@pytest.mark.parametrize("kind", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_a_bit(kind, dtype):
    rng = np.random.default_rng(3)
    x, gamma, beta = inputs(rng, (64, 1000), dtype)
    residual = rng.standard_normal(x.shape).astype(dtype)
    results = []
    for n_threads in (1, 2):
        r = residual.copy()
        results.append((run(kind, x, gamma, beta, r, n_threads=n_threads)[0].tobytes(), r.tobytes()))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"gamma": np.ones(4)}, ValueError),
        ({"gamma": np.ones(5, np.float32)}, TypeError),
        ({"beta": np.ones(6)}, ValueError),
        ({"residual": np.zeros((3, 4))}, ValueError),
        ({"residual": np.zeros((3, 10))[:, ::2]}, ValueError),  # updated in place: must be contiguous
        ({"residual": np.zeros((3, 5), np.float32)}, TypeError),
        ({"out": np.empty((3, 4))}, ValueError),
        ({"n_threads": 0}, ValueError),
    ],
)
def test_bad_arguments_raise(kwargs, error):
    args = {"gamma": np.ones(5), "beta": None} | kwargs
    with pytest.raises(error):
        ops.layer_norm(np.zeros((3, 5)), args.pop("gamma"), args.pop("beta"), **args)


def test_bad_dtypes_raise():
    with pytest.raises(TypeError):
        ops.rms_norm(np.zeros((2, 3), np.float16), np.ones(3, np.float16))
    with pytest.raises(TypeError):
        ops.rms_norm(np.zeros((2, 3)), [1.0, 1.0, 1.0])
