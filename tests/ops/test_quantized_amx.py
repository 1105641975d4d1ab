"""The AMX path of the int8 kernels (native/qgemm_kernels.c: 32-row blocks on tiles) against numpy
and against the AVX-512 path. Skipped where the CPU or the OS does not lend AMX.

Shapes: whole 32-row blocks and leftover rows (which take the AVX-512 tiles), k a multiple of 64
(AMX) or not (all AVX-512), columns crossing the 64-column panels.
"""

import numpy as np
import pytest

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops import reference
from aiotranslate.ops.quantized import Int8Weight, IntgemmInput, int8_linear_static

native = load("_qgemm")
pytestmark = pytest.mark.skipif(native is None or not native.amx(), reason="no AMX (CPU, OS or build)")

SHAPES = [(32, 64, 64), (70, 512, 130), (33, 256, 65), (128, 2048, 200), (64, 100, 64), (96, 192, 1)]


@pytest.fixture
def amx():
    """AMX on for the test, and back to the default after it."""
    assert native.set_amx(True)
    yield
    native.set_isa(None)


def _both(fn):
    """fn() with AMX on, then with it off."""
    on = fn()
    native.set_amx(False)
    off = fn()
    native.set_amx(True)
    return on, off


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_amx_products_are_exact(amx, m, k, n):
    rng = np.random.default_rng(1)
    s = rng.integers(-127, 128, (m, k), dtype=np.int8)
    q = rng.integers(-127, 128, (n, k), dtype=np.int8)
    s[0], q[0] = 127, -127  # the largest products, with the +128 shift at its worst
    weight = Int8Weight.from_int8(q, np.ones(n, np.float32))
    out = np.empty((m, n), np.int32)
    native.matmul_s32(s, *weight.data, n, out)
    np.testing.assert_array_equal(out, reference.int8_matmul(s, q))


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_amx_and_avx512_outputs_are_bitwise_equal(amx, m, k, n):
    """Same int32 sums, same epilogue: the path a row takes does not show in its output."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((m, k)).astype(np.float32)
    weight = Int8Weight.quantize(rng.standard_normal((n, k)).astype(np.float32))
    bias, residual = rng.standard_normal(n).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    for n_threads in (1, 2):
        on, off = _both(lambda: ops.int8_linear(x, weight, bias, activation="silu", residual=residual,
                                                n_threads=n_threads))  # fmt: skip
        np.testing.assert_array_equal(on, off)
    prep = IntgemmInput.prepare(weight, 9.0, rng.uniform(20, 200, n), bias)
    on, off = _both(lambda: int8_linear_static(x, weight, prep, activation="relu"))
    np.testing.assert_array_equal(on, off)


def test_amx_follows_the_instruction_set():
    try:
        native.set_isa("avx2")
        assert not native.amx() and not native.set_amx(True)
    finally:
        native.set_isa(None)
    assert native.amx()
