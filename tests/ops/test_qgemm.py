"""int8 and bfloat16 linear products (native/_qgemm.pyx) against the numpy reference.

The integer stages are exact: the kernels' activation quantization equals `reference.quantize_rows`
bit for bit, and their int8 x int8 -> int32 products equal numpy's on every instruction set (VNNI with
its unsigned-operand compensation, AVX2, portable). The float epilogue (scales, bias, activation,
residual) is checked against `reference.int8_linear` to float32 rounding. Shapes cross the panel
(64 columns), the AVX-512 row tile (6), the k groups (4 for int8, 2 for bf16) and sizes 0 and 1.
"""

import numpy as np
import pytest

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops import reference
from aiotranslate.ops.quantized import BF16Weight, Int8BlockWeight, Int8Weight, Int8WeightOnly

native = load("_qgemm")
needs_native = pytest.mark.skipif(native is None, reason="native kernels not built")

SHAPES = [(1, 5, 3), (7, 33, 70), (13, 512, 130), (1, 256, 64), (6, 64, 65), (40, 1000, 130), (0, 4, 4), (3, 0, 5)]
ACTS = [None, "relu", "gelu", "gelu_tanh", "silu"]


@pytest.fixture(params=["avx512", "avx2", "portable"])
def isa(request):
    """Each instruction set the CPU has (a set it lacks runs the best it has: skipped)."""
    if native is None:
        pytest.skip("native kernels not built")
    try:
        got = native.set_isa(request.param)
        if got != request.param:
            pytest.skip(f"this CPU has no {request.param}")
        yield got
    finally:
        native.set_isa(None)


def _data(rng, m, k, n):
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    return x, w


@needs_native
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_activation_quantization_is_the_reference(m, k, n):
    x = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32) * 3
    if m:
        x[0] = 0.0  # a zero row: scale 0, q 0
    q, scales = np.empty((m, k), np.int8), np.empty(m, np.float32)
    native.quantize_rows(x, q, scales)
    q_ref, scales_ref = reference.quantize_rows(x)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(scales, scales_ref)
    assert np.abs(q.astype(int)).max(initial=0) <= 127


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_int8_products_are_exact(isa, m, k, n):
    """s @ q^T in int32 equals numpy's, extremes included (-127 and 127 everywhere)."""
    rng = np.random.default_rng(1)
    s = rng.integers(-127, 128, (m, k), dtype=np.int8)
    q = rng.integers(-127, 128, (n, k), dtype=np.int8)
    if m and n and k:
        s[0], q[0] = 127, -127
    weight = Int8Weight.from_int8(q, np.ones(n, np.float32))
    out = np.empty((m, n), np.int32)
    native.matmul_s32(s, *weight.data, n, out)
    np.testing.assert_array_equal(out, reference.int8_matmul(s, q))


@pytest.mark.parametrize(("m", "k", "n", "act"), [s + (ACTS[i % len(ACTS)],) for i, s in enumerate(SHAPES)])
def test_int8_linear_matches_the_reference(isa, m, k, n, act):
    rng = np.random.default_rng(2)
    x, w = _data(rng, m, k, n)
    bias, residual = rng.standard_normal(n).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    weight = Int8Weight.quantize(w)
    q, scales = reference.quantize_rows(w)
    np.testing.assert_array_equal(weight.scales, scales)
    expected = reference.int8_linear(x, q, scales, bias, ops.gemm.activation_code(act), residual)
    for n_threads in (1, 2):
        got = ops.int8_linear(x, weight, bias, activation=act, residual=residual, n_threads=n_threads)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max(initial=0)))


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_bf16_linear_matches_the_reference(isa, m, k, n):
    rng = np.random.default_rng(3)
    x, w = _data(rng, m, k, n)
    bias, residual = rng.standard_normal(n).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    expected = reference.bf16_linear(x, w, bias, reference.ACT_SILU, residual)
    got = ops.bf16_linear(x, BF16Weight.from_float(w), bias, activation="silu", residual=residual, n_threads=2)
    # float32 sums of exact bf16 products: error ~ eps32 * sqrt(K) * sum|terms|
    tol = 1e-6 * max(1.0, np.sqrt(k)) * (np.abs(reference.bf16_round(x)) @ np.abs(reference.bf16_round(w)).T + 2)
    assert np.all(np.abs(got - expected) <= tol)


def test_int8_error_is_small_against_float32():
    """Per-row int8 of both operands: about 1% of the product's magnitude."""
    rng = np.random.default_rng(4)
    x, w = _data(rng, 8, 512, 300)
    got = ops.int8_linear(x, Int8Weight.quantize(w))
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.abs(got - exact).max() <= 0.02 * np.abs(exact).max()


@pytest.mark.parametrize("kind", [Int8Weight, Int8BlockWeight, Int8WeightOnly])
def test_in_place_residual_and_batched_shapes(kind):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    w = rng.standard_normal((40, 64)).astype(np.float32)
    weight = kind.quantize(w)
    h = rng.standard_normal((2, 3, 40)).astype(np.float32)
    expected = ops.int8_linear(x, weight) + h
    ops.int8_linear(x, weight, residual=h, out=h)
    np.testing.assert_allclose(h, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", [Int8Weight.quantize, BF16Weight.from_float])
def test_selected_rows_compute_those_columns(kind):
    rng = np.random.default_rng(6)
    x, w = _data(rng, 5, 70, 150)
    weight = kind(w)
    rows = np.array([149, 0, 3, 77, 64, 63])
    linear = ops.int8_linear if isinstance(weight, Int8Weight) else ops.bf16_linear
    np.testing.assert_array_equal(linear(x, weight.select(rows)), linear(x, weight)[:, rows])
    with pytest.raises(ValueError, match="rows must lie"):
        weight.select(np.array([150]))


def test_bad_arguments_are_refused():
    weight = Int8Weight.quantize(np.ones((4, 8), np.float32))
    with pytest.raises(ValueError, match="features"):
        ops.int8_linear(np.ones((2, 7), np.float32), weight)
    with pytest.raises(TypeError, match="float32"):
        ops.int8_linear(np.ones((2, 8), np.float64), weight)
    with pytest.raises(ValueError, match="bias"):
        ops.int8_linear(np.ones((2, 8), np.float32), weight, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="int8"):
        Int8Weight.from_int8(np.ones((4, 8), np.float32), 1.0)
