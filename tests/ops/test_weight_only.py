"""Weight-only int8 linear products (`Int8WeightOnly`: int8 weights with a scale per block of 32
along K, float32 activations; native/gemm_wq_tiles.h) against `weight_only_reference`.

The kernel dequantizes each weight to float32 as the reference does (q * scale, one rounding) and
sums in float32, so the outputs agree to float32 rounding. Every output element is the same chain of
FMAs whichever path computes it (dequantizing tiles for the few rows of decoding, a dequantized
panel under outer-product tiles beyond one tile of rows) and whichever thread: results are bitwise
the same for every thread count and for a row alone or within a batch. Shapes cross the tiles' row
counts (4 and 6), the panel (64 columns) and sizes 0 and 1. The argument checks it shares with
`Int8BlockWeight`, the property-based test of any shape and layout and the fallback without the
extension are in test_qblock.py, the in-place residual in test_qgemm.py.
"""

import numpy as np
import pytest

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops.quantized import BLOCK, Int8WeightOnly, quantize_blocks, weight_only_reference

native = load("_gemm")
needs_native = pytest.mark.skipif(native is None, reason="native kernels not built")
ACTS = [None, "relu", "gelu", "gelu_tanh", "silu"]
CODES = {None: 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "silu": 4}

# (M, K, N): M across the row tiles (4, 6, 8: 7-8 in half-width strips) and the panel path (> one tile), N across the 64-column panel
SHAPES = [
    (1, 32, 5), (2, 64, 64), (4, 96, 70), (6, 128, 130), (7, 576, 200), (8, 160, 65), (15, 64, 64), (16, 320, 129),
    (37, 160, 130), (1, 1536, 65), (0, 32, 4), (3, 32, 0), (5, 0, 3),
]  # fmt: skip


def random_weight(rng, n, k):
    q = rng.integers(-128, 128, (n, k), dtype=np.int8)  # -128 too: a GGUF file may hold it
    return q, rng.uniform(0.001, 0.05, (n, k // BLOCK)).astype(np.float32)


@pytest.mark.parametrize(("m", "k", "n", "act"), [s + (ACTS[i % len(ACTS)],) for i, s in enumerate(SHAPES)])
def test_matches_the_reference(isa, m, k, n, act):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k)).astype(np.float32)
    q, scales = random_weight(rng, n, k)
    bias, residual = rng.standard_normal(n).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    weight = Int8WeightOnly.from_int8(q, scales)
    outs = [ops.int8_linear(x, weight, bias, activation=act, residual=residual, n_threads=t) for t in (1, 2)]
    assert outs[0].tobytes() == outs[1].tobytes()
    np.testing.assert_allclose(outs[0], weight_only_reference(x, q, scales, bias, CODES[act], residual),
                               rtol=1e-5, atol=1e-4)  # fmt: skip


def test_a_row_gives_the_same_bits_alone_and_in_any_batch(isa):
    """Decoding one row and prefilling 40 take different paths (tiles that dequantize in registers,
    a dequantized panel): the same FMA chains, so the same bits."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 192)).astype(np.float32)
    weight = Int8WeightOnly.from_int8(*random_weight(rng, 700, 192))
    full = ops.int8_linear(x, weight, n_threads=2)
    for rows in (slice(0, 1), slice(3, 7), slice(20, 27), slice(10, 18), slice(0, 40)):
        np.testing.assert_array_equal(ops.int8_linear(x[rows], weight), full[rows])


def test_activations_stay_float():
    """One outlier channel (as LLM activations have) costs nothing: only the weight is rounded."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 512)).astype(np.float32)
    x[:, [7, 300]] *= 60
    w = rng.standard_normal((256, 512)).astype(np.float32)
    q, scales = quantize_blocks(w)
    dequantized = (q.reshape(256, -1, BLOCK) * scales[..., None]).reshape(256, 512)
    got = ops.int8_linear(x, Int8WeightOnly.quantize(w))
    np.testing.assert_allclose(got, x.astype(np.float64) @ dequantized.T, rtol=1e-4, atol=1e-3)
    per_row = ops.int8_linear(x, ops.Int8Weight.quantize(w))
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.abs(got - exact).max() < np.abs(per_row - exact).max() / 4


def test_values_and_selected_rows():
    rng = np.random.default_rng(3)
    q, scales = random_weight(rng, 150, 96)
    weight = Int8WeightOnly.from_int8(q, scales)
    np.testing.assert_array_equal(weight.values()[0], q)
    np.testing.assert_array_equal(weight.values()[1], scales)
    x = rng.standard_normal((5, 96)).astype(np.float32)
    rows = np.array([149, 0, 3, 77, 64, 63])
    np.testing.assert_array_equal(ops.int8_linear(x, weight.select(rows)), ops.int8_linear(x, weight)[:, rows])
    with pytest.raises(ValueError, match="rows must lie"):
        weight.select(np.array([150]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_input_spoils_only_its_own_row(bad):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    x[1, 40] = bad
    weight = Int8WeightOnly.from_int8(*random_weight(rng, 10, 64))
    out = ops.int8_linear(x, weight, n_threads=2)
    assert not np.isfinite(out[1]).any() and np.isfinite(out[[0, 2]]).all()


@needs_native
def test_kernel_refuses_bad_shapes_and_overlap():
    x, out = np.ones((2, 64), np.float32), np.empty((2, 4), np.float32)
    packed, scales = np.ones((1, 64, 64), np.int8), np.ones((2, 64), np.float32)
    native.linear_int8w(x, packed, scales, 4, None, 0, None, out, 1)
    np.testing.assert_array_equal(out, 64)
    with pytest.raises(ValueError, match="multiple of the weight-only block size"):
        native.linear_int8w(np.ones((2, 40), np.float32), np.ones((1, 40, 64), np.int8), scales, 4, None, 0, None,
                            out, 1)  # fmt: skip
    with pytest.raises(ValueError, match="packed has shape"):
        native.linear_int8w(x, np.ones((2, 64, 64), np.int8), scales, 4, None, 0, None, out, 1)
    with pytest.raises(ValueError, match="scales has shape"):
        native.linear_int8w(x, packed, np.ones((1, 64), np.float32), 4, None, 0, None, out, 1)
    with pytest.raises(ValueError, match="n_threads"):
        native.linear_int8w(x, packed, scales, 4, None, 0, None, out, 0)
    with pytest.raises(ValueError, match="activation"):
        native.linear_int8w(x, packed, scales, 4, None, 9, None, out, 1)
    square = np.ones((2, 64), np.float32)
    with pytest.raises(ValueError, match="must not overlap x"):
        native.linear_int8w(square, np.ones((1, 64, 64), np.int8), scales, 64, None, 0, None, square, 1)
