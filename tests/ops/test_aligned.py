"""64-byte aligned arrays (`ops.aligned`) and the packed weights made of them: every packed form a
model holds starts on a cache line, whatever numpy's allocator returned."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiotranslate import ops
from aiotranslate._native import load
from aiotranslate.ops import aligned
from aiotranslate.ops.quantized import BF16Weight, Int8BlockWeight, Int8Weight, Int8WeightOnly

DTYPES = [np.float32, np.float64, np.int8, np.uint8, np.uint16, np.int32]


@given(shape=st.lists(st.integers(0, 7), min_size=1, max_size=3), dtype=st.sampled_from(DTYPES))
def test_arrays_start_on_a_cache_line(shape, dtype):
    arrays = [aligned.empty(tuple(shape), dtype) for _ in range(4)], [aligned.zeros(tuple(shape), dtype)]
    for a in arrays[0] + arrays[1]:
        assert a.shape == tuple(shape) and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable
        assert a.size == 0 or a.ctypes.data % aligned.ALIGNMENT == 0  # an empty array has no data to align
    assert not arrays[1][0].any()


def test_only_its_own_arrays_count_as_owning_their_buffer():
    """layers.weight_memory moves the arrays that own their memory, and these: not views of a file."""
    assert aligned.owns_buffer(aligned.empty((4, 3), np.float32))
    plain = np.zeros((4, 3), np.float32)
    mapped = np.frombuffer(bytearray(48), np.float32).reshape(4, 3)
    assert not any(aligned.owns_buffer(a) for a in (plain, plain[1:], mapped, aligned.empty((4, 3), np.float32)[1:]))


def _packed_arrays(rng):
    w = rng.standard_normal((70, 96)).astype(np.float32)
    q, scales = ops.quantized.quantize_blocks(w)
    rows = np.array([5, 69, 0])
    yield ops.PackedWeight.pack(w).data
    yield ops.PackedWeight.pack(w).select(rows).data
    for weight in (Int8Weight.quantize(w), Int8BlockWeight.from_int8(q, scales), Int8WeightOnly.from_int8(q, scales),
                   BF16Weight.from_float(w)):  # fmt: skip
        for form in (weight, weight.select(rows)):
            yield from (form.data,) if isinstance(form.data, np.ndarray) else form.data[:1]


@pytest.mark.skipif(load("_gemm") is None or load("_qgemm") is None, reason="native kernels not built")
def test_every_packed_weight_starts_on_a_cache_line():
    for data in _packed_arrays(np.random.default_rng(0)):
        assert data.ctypes.data % aligned.ALIGNMENT == 0 and not data.flags.writeable
