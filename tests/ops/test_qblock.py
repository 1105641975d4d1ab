"""Block-scaled int8 linear products (GGUF Q8_0's arithmetic; native/qblock_kernels.c) against numpy.

The integer stages are exact: the kernels' quantization of x per block of 32 equals
`reference.quantize_rows` on each block bit for bit, and their block dot products (VNNI with the
activation-side compensation, AVX2, portable) equal numpy's int64 sums. The float sum over the
blocks is checked against `block_reference` to float32 rounding, and is bitwise the same for every
thread count and every instruction set, AMX included (the same FMA on the same exact sums). Shapes
cross the panel (64 columns), the AVX-512 row tile (3), the AMX row block (16) and sizes 0 and 1.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops import reference
from aiotranslate.ops.quantized import BLOCK, Int8BlockWeight, Int8WeightOnly, block_reference, weight_only_reference

from test_qgemm import isa  # noqa: F401  (the fixture: each instruction set the CPU has)

native = load("_qgemm")
needs_native = pytest.mark.skipif(native is None, reason="native kernels not built")
ISAS = ["avx512", "avx2", "portable"]
ACTS = [None, "relu", "gelu", "gelu_tanh", "silu"]

# (M, K, N): M and N cross the row tile and the panel, K is blocks of 32
SHAPES = [
    (1, 32, 5), (2, 64, 64), (4, 96, 70), (7, 128, 130), (13, 576, 200), (1, 1536, 65), (0, 32, 4), (3, 32, 0),
    (16, 64, 64), (37, 160, 130),  # AMX blocks of 16 rows and the rows left over
]  # fmt: skip


def block_sums(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(M, N, K/32): the exact dot products of each block of s (M, K) and q (N, K)."""
    (m, k), n = s.shape, len(q)
    blocks = (s.reshape(m, k // BLOCK, BLOCK), q.reshape(n, k // BLOCK, BLOCK))
    return np.einsum("mbt,nbt->mnb", *(b.astype(np.int64) for b in blocks))


def random_weight(rng, n, k):
    q = rng.integers(-128, 128, (n, k), dtype=np.int8)  # -128 too: a file may hold it
    scales = rng.uniform(0.001, 0.05, (n, k // BLOCK)).astype(np.float32)
    return q, scales


@needs_native
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_activation_quantization_is_the_reference_per_block(m, k, n):
    x = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32) * 3
    if m:
        x[0, :BLOCK] = 0.0  # a zero block: scale 0, q 0
        x[-1, -BLOCK:] *= 1000  # a block of outliers leaves the others' scales alone
    q, scales = np.empty((m, k), np.int8), np.empty((m, k // BLOCK), np.float32)
    native.quantize_blocks(x, q, scales)
    q_ref, scales_ref = reference.quantize_rows(x.reshape(m, k // BLOCK, BLOCK))
    np.testing.assert_array_equal(q, q_ref.reshape(m, k))
    np.testing.assert_array_equal(scales, scales_ref)
    assert np.abs(q.astype(int)).max(initial=0) <= 127


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_block_products_are_exact(isa, m, k, n):
    """Every block's int32 dot product equals numpy's, extremes included (127 against -128)."""
    rng = np.random.default_rng(1)
    s = rng.integers(-127, 128, (m, k), dtype=np.int8)
    q, scales = random_weight(rng, n, k)
    if m and n:
        s[0], q[0] = 127, -128
    weight = Int8BlockWeight.from_int8(q, scales)
    out = np.empty((m, n, k // BLOCK), np.int32)
    native.block_sums(s, weight.data[0], n, out)
    np.testing.assert_array_equal(out, block_sums(s, q))


@pytest.mark.parametrize(("m", "k", "n", "act"), [s + (ACTS[i % len(ACTS)],) for i, s in enumerate(SHAPES)])
def test_block_linear_matches_the_reference(isa, m, k, n, act):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((m, k)).astype(np.float32)
    q, scales = random_weight(rng, n, k)
    bias, residual = rng.standard_normal(n).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    code = {None: 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "silu": 4}[act]
    got = ops.int8_linear(x, Int8BlockWeight.from_int8(q, scales), bias, activation=act, residual=residual)
    expected = block_reference(x, q, scales, bias, code, residual)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


@needs_native
@pytest.mark.parametrize("m", [5, 37])
def test_results_are_bitwise_equal_for_every_thread_count_and_instruction_set(m):
    """37 rows: two AMX blocks of 16 (where the CPU has AMX) and 5 rows on AVX-512, against AMX off."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((m, 320)).astype(np.float32)
    weight = Int8BlockWeight.from_int8(*random_weight(rng, 700, 320))
    first = ops.int8_linear(x, weight, n_threads=1)
    for n_threads in (2, 3, 4):
        np.testing.assert_array_equal(ops.int8_linear(x, weight, n_threads=n_threads), first)
    try:
        native.set_amx(False)
        np.testing.assert_array_equal(ops.int8_linear(x, weight, n_threads=2), first)
        for name in ISAS:
            if native.set_isa(name) == name:
                np.testing.assert_array_equal(ops.int8_linear(x, weight, n_threads=2), first)
    finally:
        native.set_isa(None)


@needs_native
@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 20),
    blocks=st.integers(0, 6),
    n=st.integers(0, 140),
    transposed=st.booleans(),
    seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize(("kind", "expected"), [(Int8BlockWeight, block_reference), (Int8WeightOnly, weight_only_reference)])
def test_any_shape_and_layout_matches_the_reference(kind, expected, m, blocks, n, transposed, seed):
    """Odd M and N, K = 0, strided (transposed) and read-only inputs: the same as the reference, for
    activations in blocks and weight-only (test_weight_only.py) alike."""
    rng = np.random.default_rng(seed)
    k = blocks * BLOCK
    x = rng.standard_normal((k, m)).astype(np.float32).T if transposed else rng.standard_normal((m, k)).astype(np.float32)
    x.flags.writeable = False
    q, scales = random_weight(rng, n, k)
    got = ops.int8_linear(x, kind.from_int8(q, scales), n_threads=2)
    np.testing.assert_allclose(got, expected(np.ascontiguousarray(x), q, scales), rtol=1e-5, atol=1e-4)


def test_float_weights_quantize_per_block():
    """Blocks of 32 follow each block's range: an outlier coarsens its own block, not the row."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 128)).astype(np.float32)
    w[0, 5] = 500.0
    weight = Int8BlockWeight.quantize(w)
    q, scales = reference.quantize_rows(w.reshape(3, 4, BLOCK))
    x = np.eye(128, dtype=np.float32)[:40]  # one-hot rows: x is exact in int8, out is W^T's rows
    np.testing.assert_allclose(ops.int8_linear(x, weight), (q * scales[..., None]).reshape(3, 128).T[:40], rtol=1e-6)
    assert scales[0, 1] < scales[0, 0] / 100  # the outlier's block only


def test_int8_error_is_smaller_in_blocks_than_per_row_with_outlier_channels():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 512)).astype(np.float32)
    x[:, [7, 300]] *= 60  # outlier channels, as LLM activations have
    w = rng.standard_normal((256, 512)).astype(np.float32)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    per_row = np.abs(ops.int8_linear(x, ops.Int8Weight.quantize(w)) - exact).max()
    blocks = np.abs(ops.int8_linear(x, Int8BlockWeight.quantize(w)) - exact).max()
    assert blocks < per_row / 2


def test_selected_rows_compute_those_columns():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 96)).astype(np.float32)
    weight = Int8BlockWeight.from_int8(*random_weight(rng, 150, 96))
    rows = np.array([149, 0, 3, 77, 64, 63])
    np.testing.assert_array_equal(ops.int8_linear(x, weight.select(rows)), ops.int8_linear(x, weight)[:, rows])
    with pytest.raises(ValueError, match="rows must lie"):
        weight.select(np.array([150]))


@pytest.mark.parametrize("kind", [Int8BlockWeight, Int8WeightOnly])
def test_bad_arguments_are_refused(kind):
    with pytest.raises(ValueError, match="multiple of 32"):
        kind.quantize(np.ones((4, 40), np.float32))
    with pytest.raises(ValueError, match="multiple of 32"):
        kind.from_int8(np.ones((4, 40), np.int8), np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="int8"):
        kind.from_int8(np.ones((4, 32), np.float32), np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="scales must have shape"):
        kind.from_int8(np.ones((4, 64), np.int8), np.ones(4, np.float32))
    weight = kind.quantize(np.ones((4, 64), np.float32))
    with pytest.raises(ValueError, match="features"):
        ops.int8_linear(np.ones((2, 32), np.float32), weight)
    with pytest.raises(TypeError, match="float32"):
        ops.int8_linear(np.ones((2, 64), np.float64), weight)
    with pytest.raises(ValueError, match="bias"):
        ops.int8_linear(np.ones((2, 64), np.float32), weight, np.ones(3, np.float32))


@needs_native
def test_kernel_refuses_k_outside_whole_blocks_and_mismatched_scales():
    x = np.ones((2, 40), np.float32)
    with pytest.raises(ValueError, match="multiple of the int8 block size"):
        native.int8_block_linear(x, np.ones((64, 40), np.uint8), np.ones((1, 64), np.float32), 4, None, 0, None,
                                 np.empty((2, 4), np.float32), 1)  # fmt: skip
    with pytest.raises(ValueError, match="scales has shape"):
        native.int8_block_linear(np.ones((2, 64), np.float32), np.ones((64, 64), np.uint8),
                                 np.ones((1, 64), np.float32), 4, None, 0, None, np.empty((2, 4), np.float32), 1)  # fmt: skip
    with pytest.raises(ValueError, match="multiple of the int8 block size"):
        native.quantize_blocks(x, np.empty((2, 40), np.int8), np.empty((2, 1), np.float32))


@needs_native
@pytest.mark.parametrize(("kind", "kernels"), [(Int8BlockWeight, "_kernels"), (Int8WeightOnly, "_float_kernels")])
def test_without_the_extension_the_reference_computes_the_same(monkeypatch, kind, kernels):
    from aiotranslate.ops import quantized

    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    q, scales = random_weight(rng, 70, 64)
    rows = np.array([69, 2, 5])
    native_out = ops.int8_linear(x, kind.from_int8(q, scales).select(rows), activation="silu")
    monkeypatch.setattr(quantized, kernels, None)
    fallback = ops.int8_linear(x, kind.from_int8(q, scales).select(rows), activation="silu")
    np.testing.assert_allclose(fallback, native_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_input_spoils_only_its_own_row(bad):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    x[1, 40] = bad
    weight = Int8BlockWeight.from_int8(*random_weight(rng, 10, 64))
    out = ops.int8_linear(x, weight, n_threads=2)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    np.testing.assert_array_equal(out[[0, 2]], ops.int8_linear(x[[0, 2]], weight))
