"""Packed float32 weights (`ops.PackedWeight`: panels of 64 rows, K-major; native/gemm_tiles.h's
gemm_pk) through `ops.linear`, against the numpy reference.

Every output element is one FMA chain in K order whichever tile, row block (PK_ROWS = 256 rows)
or thread computes it: results are bitwise the same for every thread count and for a row alone or
within any batch. Shapes cross the row tiles (6), the 64-column panels, the K blocks (128), the row
blocks, and sizes 0 and 1.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_gemm import ACTS, arrays, assert_linear_close

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops import PackedWeight, reference

native = load("_gemm")
needs_native = pytest.mark.skipif(native is None, reason="native kernels not built")
SIZES = [0, 1, 2, 5, 6, 7, 13, 64, 65, 129, 130]


@given(
    m=st.sampled_from(SIZES + [257, 300]),
    k=st.sampled_from(SIZES),
    n=st.sampled_from(SIZES),
    act=st.sampled_from(ACTS),
    with_bias=st.booleans(),
    with_residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_the_reference(m, k, n, act, with_bias, with_residual, seed):
    rng = np.random.default_rng(seed)
    x, w, bias, residual = arrays(rng, np.float32, (m, k), (n, k), (n,), (m, n))
    bias = bias if with_bias else None
    residual = residual if with_residual else None
    outs = [ops.linear(x, PackedWeight.pack(w), bias, activation=act, residual=residual, n_threads=t) for t in (1, 2)]
    assert outs[0].shape == (m, n) and outs[0].tobytes() == outs[1].tobytes()
    assert_linear_close(outs[0], x, w, bias, act, residual)


def test_every_instruction_set(isa):
    rng = np.random.default_rng(1)
    # One row: a partial panel, two panels with a partial second, a block of two panels and one more.
    for m, k, n in [(1, 64, 37), (1, 129, 100), (1, 40, 130), (2, 300, 19), (6, 17, 64), (7, 129, 65), (33, 200, 75),
                    (100, 257, 130), (260, 40, 70)]:  # fmt: skip
        x, w, bias, residual = arrays(rng, np.float32, (m, k), (n, k), (n,), (m, n))
        outs = [ops.linear(x, PackedWeight.pack(w), bias, activation="silu", residual=residual, n_threads=t)
                for t in (1, 2)]  # fmt: skip
        assert outs[0].tobytes() == outs[1].tobytes()
        assert_linear_close(outs[0], x, w, bias, "silu", residual)


def test_a_row_gives_the_same_bits_alone_and_in_any_batch(isa):
    """One row (whole rows of one or two panels at a time), a few, many (K blocks) and more than a row block: the
    same FMA chains, so the same bits (decoding a row alone or in a batch gives the same logits)."""
    rng = np.random.default_rng(2)
    x, w = arrays(rng, np.float32, (300, 200), (150, 200))
    weight = PackedWeight.pack(w)
    full = ops.linear(x, weight, n_threads=2)
    for rows in (slice(0, 1), slice(3, 7), slice(10, 42), slice(40, 300)):
        np.testing.assert_array_equal(ops.linear(x[rows], weight), full[rows])


def test_values_selected_rows_and_read_only():
    rng = np.random.default_rng(3)
    x, w, bias = arrays(rng, np.float32, (5, 96), (150, 96), (150,))
    weight = PackedWeight.pack(w)
    assert weight.shape == (150, 96) and not weight.data.flags.writeable
    np.testing.assert_array_equal(weight.values(), w)
    rows = np.array([149, 0, 3, 77, 64, 63])
    np.testing.assert_array_equal(ops.linear(x, weight.select(rows)), ops.linear(x, weight)[:, rows])
    with pytest.raises(ValueError, match="rows must lie"):
        weight.select(np.array([150]))
    w.setflags(write=False)
    x.setflags(write=False)
    assert_linear_close(ops.linear(x, PackedWeight.pack(w), bias), x, w, bias)


def test_residual_may_be_out():
    rng = np.random.default_rng(4)
    x, w, bias, residual = arrays(rng, np.float32, (9, 20), (36, 20), (36,), (9, 36))
    weight = PackedWeight.pack(w)
    expected = ops.linear(x, weight, bias, activation="gelu", residual=residual)
    ops.linear(x, weight, bias, activation="gelu", residual=residual, out=residual)
    assert residual.tobytes() == expected.tobytes()


def test_bad_arguments():
    weight = PackedWeight.pack(np.ones((4, 8), np.float32))
    with pytest.raises(ValueError, match="x has 6 features"):
        ops.linear(np.ones((2, 6), np.float32), weight)
    with pytest.raises(TypeError, match="expected float32"):
        ops.linear(np.ones((2, 8)), weight)
    with pytest.raises(TypeError, match="float32"):
        PackedWeight.pack(np.ones((4, 8), np.int32))
    with pytest.raises(ValueError, match="2"):
        PackedWeight.pack(np.ones(8, np.float32))


@needs_native
def test_kernel_refuses_bad_shapes_and_overlap():
    x, out = np.ones((2, 8), np.float32), np.empty((2, 4), np.float32)
    packed = np.ones((1, 8, 64), np.float32)
    native.linear_packed(x, packed, 4, None, 0, None, out, 1)
    np.testing.assert_array_equal(out, 8)
    with pytest.raises(ValueError, match="packed has shape"):
        native.linear_packed(x, np.ones((2, 8, 64), np.float32), 4, None, 0, None, out, 1)
    with pytest.raises(ValueError, match="packed has shape"):
        native.linear_packed(x, np.ones((1, 8, 32), np.float32), 4, None, 0, None, out, 1)
    with pytest.raises(ValueError, match="n_threads"):
        native.linear_packed(x, packed, 4, None, 0, None, out, 0)
    with pytest.raises(ValueError, match="activation"):
        native.linear_packed(x, packed, 4, None, 9, None, out, 1)
    square = np.ones((2, 64), np.float32)
    with pytest.raises(ValueError, match="must not overlap x"):
        native.linear_packed(square, np.ones((1, 64, 64), np.float32), 64, None, 0, None, square, 1)


@needs_native
def test_without_the_extension_the_reference_computes_the_same(monkeypatch):
    from aiotranslate.ops import gemm

    rng = np.random.default_rng(5)
    x, w = arrays(rng, np.float32, (3, 64), (70, 64))
    rows = np.array([69, 2, 5])
    native_out = ops.linear(x, PackedWeight.pack(w).select(rows), activation="silu")
    monkeypatch.setattr(gemm, "_kernels", None)
    fallback = ops.linear(x, PackedWeight.pack(w).select(rows), activation="silu")
    np.testing.assert_allclose(fallback, native_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fallback, reference.linear(x, w[rows], None, reference.ACT_SILU), rtol=1e-5, atol=1e-5)
