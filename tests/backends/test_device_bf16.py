"""`bf16_bits`, the host rounding of the GPU's bfloat16 weights, against ml_dtypes' bfloat16 cast
(round to nearest even): every float32 class (normals, ties both ways, subnormals, overflow to inf,
inf, NaN with payloads in either half)."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from aiotranslate.models.device_bf16 import bf16_bits


def oracle(a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # ml_dtypes warns on casting NaN, which it keeps NaN
        return a.astype(ml_dtypes.bfloat16).view(np.uint16)


def from_bits(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def test_random_values_round_as_ml_dtypes():
    rng = np.random.default_rng(0)
    scaled = rng.standard_normal(100_000) * 10.0 ** rng.integers(-30, 30, 100_000)  # within float32
    a = np.concatenate([
        scaled.astype(np.float32),
        from_bits(rng.integers(0, 2**32, 100_000, dtype=np.uint32)),  # every bit pattern class
    ])  # fmt: skip
    finite = ~np.isnan(a)
    got, want = bf16_bits(a), oracle(a)
    assert got.dtype == np.uint16 and got.shape == a.shape
    np.testing.assert_array_equal(got[finite], want[finite])


def test_ties_go_to_even_and_edges():
    values = from_bits([
        0x3F808000,  # 1 + 2^-8: a tie, the kept half is even -> down
        0x3F818000,  # a tie with an odd kept half -> up
        0x3F808001,  # just past the tie -> up
        0x00000001,  # the smallest subnormal -> +0
        0x00018000,  # a subnormal tie, odd -> up
        0x7F7FFFFF,  # the largest float32 -> inf
        0x7F800000, 0xFF800000, 0x80000000,  # inf, -inf, -0
    ])  # fmt: skip
    np.testing.assert_array_equal(bf16_bits(values), oracle(values))
    assert list(bf16_bits(values[:3])) == [0x3F80, 0x3F82, 0x3F81]


def test_nan_stays_nan_with_its_sign():
    nans = from_bits([0x7FC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0x7F810000])  # payload low, high
    bits = bf16_bits(nans)
    assert np.isnan(from_bits(bits.astype(np.uint32) << 16)).all()  # never rounded into inf
    assert list(bits >> 15) == [0, 0, 1, 0, 0]
    np.testing.assert_array_equal(bits & 0xFFC0, oracle(nans) & 0xFFC0)  # sign, exponent, quiet bit


def test_shape_and_matrix_layout_are_kept():
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    bits = bf16_bits(a)
    assert bits.shape == (3, 4) and bits.flags.c_contiguous
    np.testing.assert_array_equal(bits, oracle(a))
