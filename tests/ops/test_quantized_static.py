"""intgemm's "8bit alpha" product (`int8_linear_static`, native/qgemm_static.h) against numpy.

The integer stages are exact: the fixed-multiplier quantization equals clamp(rint(x * a)) bit for bit
(ties to even, clamping, NaN and overflow to -127 as cvtps_epi32 + max does), and the shifted
product (s + 127) @ q^T equals numpy's in int32 on every instruction set. The float epilogue (1/(a b),
the prepared bias) is checked against `intgemm_reference` to float32 rounding, and the 127-shift
compensation of the prepared bias against the plain product of the dequantized operands.
"""

import numpy as np
import pytest

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.layers import Linear
from aiotranslate.layers.quantized import Int8Linear, IntgemmLinear
from aiotranslate.ops.quantized import Int8Weight, IntgemmInput, int8_linear_static, intgemm_reference

native = load("_qgemm")
needs_native = pytest.mark.skipif(native is None, reason="native kernels not built")

SHAPES = [(1, 5, 3), (7, 33, 70), (13, 512, 130), (6, 64, 65), (40, 256, 130), (0, 4, 4), (3, 0, 5)]


@pytest.fixture(params=["avx512", "avx2", "portable"])
def isa(request):
    if native is None:
        pytest.skip("native kernels not built")
    try:
        if native.set_isa(request.param) != request.param:
            pytest.skip(f"this CPU has no {request.param}")
        yield request.param
    finally:
        native.set_isa(None)


def _case(rng, m, k, n):
    x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    q = rng.integers(-127, 128, (n, k), dtype=np.int8)
    b = rng.uniform(20, 200, n).astype(np.float32)  # w = q / b
    bias = rng.standard_normal(n).astype(np.float32)
    weight = Int8Weight.from_int8(q, 1 / b)
    return x, q, weight, IntgemmInput.prepare(weight, 13.7, b, bias), b, bias


def _quantize(x, multiplier):
    q, scales = np.empty(x.shape, np.int8), np.empty(len(x), np.float32)
    native.quantize_rows(x, q, scales, multiplier)
    assert (scales == 1).all()
    return q


@needs_native
def test_fixed_multiplier_quantization_is_prepare_a():
    a = np.float32(4.0)
    x = np.array([[0.125, 0.375, -0.125, -0.375, 31.0, 40.0, -40.0, np.nan, np.inf, -np.inf, 6e8, 1.0]], np.float32)
    # x * a: 0.5 and 1.5 tie to even (0, 2), +-160 clamp to +-127, NaN / inf / 2.4e9 take -127.
    expected = np.array([[0, 2, 0, -2, 124, 127, -127, -127, -127, -127, -127, 4]], np.int8)
    np.testing.assert_array_equal(_quantize(x, float(a)), expected)
    x = (np.random.default_rng(0).standard_normal((9, 77)) * 20).astype(np.float32)
    np.testing.assert_array_equal(_quantize(x, 3.3), np.clip(np.rint(x * np.float32(3.3)), -127, 127))


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_shifted_products_are_exact(isa, m, k, n):
    """What the epilogue receives, acc - offsets, is (s + 127) @ q^T exactly."""
    rng = np.random.default_rng(1)
    x, q, weight, prep, _, _ = _case(rng, m, k, n)
    s = _quantize(x, prep.multiplier)
    acc = np.empty((m, n), np.int32)
    native.matmul_s32(s, weight.data[0], np.zeros_like(weight.data[1]), n, acc)  # (s + 128) @ q^T
    shifted = acc - prep.offsets[:n]
    np.testing.assert_array_equal(shifted, (s.astype(np.int64) + 127) @ q.astype(np.int64).T)


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_static_linear_matches_the_reference(isa, m, k, n):
    rng = np.random.default_rng(2)
    x, q, weight, prep, _, _ = _case(rng, m, k, n)
    residual = rng.standard_normal((m, n)).astype(np.float32)
    expected = intgemm_reference(x, q, prep, ops.gemm.activation_code("relu"), residual)
    for n_threads in (1, 2):
        got = int8_linear_static(x, weight, prep, activation="relu", residual=residual, n_threads=n_threads)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(expected).max(initial=0)))


def test_prepared_bias_takes_the_shift_back():
    """float(sum u q) / (a b) + bias' equals (s / a) @ (q / b)^T + bias up to float32 rounding."""
    rng = np.random.default_rng(3)
    x, q, weight, prep, b, bias = _case(rng, 8, 256, 96)
    s = np.clip(np.rint(x * np.float32(prep.multiplier)), -127, 127)
    exact = (s / np.float64(prep.multiplier)) @ (q / b[:, None].astype(np.float64)).T + bias
    got = int8_linear_static(x, weight, prep)
    assert np.abs(got - exact).max() <= 1e-5 * np.abs(exact).max()


def test_selected_columns_and_fused_layers():
    rng = np.random.default_rng(4)
    x, q, weight, _, b, bias = _case(rng, 5, 64, 150)
    part = lambda rows, a: IntgemmLinear(  # noqa: E731
        Linear((q[rows] / b[rows, None]).astype(np.float32), bias[rows], int8=(q[rows], 1 / b[rows])), b[rows], a
    )
    fused = Int8Linear.from_linear(IntgemmLinear.fuse([part(slice(0, 70), 9.5), part(slice(70, 150), 9.5)]))
    whole = Int8Linear.from_linear(part(slice(0, 150), 9.5))
    np.testing.assert_array_equal(fused(x), whole(x))
    rows = np.array([149, 0, 3, 77, 64, 63])
    np.testing.assert_array_equal(whole.select(rows)(x), whole(x)[:, rows])
    with pytest.raises(ValueError, match="share their input multiplier"):
        IntgemmLinear.fuse([part(slice(0, 70), 9.5), part(slice(70, 150), 9.0)])


def test_bad_multipliers_are_refused():
    weight = Int8Weight.from_int8(np.ones((4, 8), np.int8), 1.0)
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="multiplier"):
            IntgemmInput.prepare(weight, bad, np.ones(4, np.float32), None)
    with pytest.raises(ValueError, match="multipliers"):
        IntgemmInput.prepare(weight, 2.0, np.zeros(4, np.float32), None)
