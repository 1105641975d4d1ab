"""Dequantize GGUF tensor data (ggml block formats) to float32 with vectorized numpy.

What it is: `dequantize(raw, ggml_type, shape)` for F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K
and Q6_K; `q8_0_values(raw, shape)`, a Q8_0 tensor's int8 values and block scales as stored (what
the block-scaled int8 kernels compute on); `BLOCK_SIZES` says how many values and bytes one block of each type holds. Every block of
a tensor is decoded at once: the byte fields of a block become columns of an (n_blocks, bytes)
array, and the formulas below run over whole columns.

What it is not: no quantization, no file reading (`gguf.py`), no compute on quantized blocks
(`ops.quantized.Int8BlockWeight`). Other
types (Q2_K, Q3_K, IQ*, ...) raise ValueError naming the type.

Block layouts and formulas: ggml's `ggml-common.h` (the `block_*` structs) and `ggml-quants.c`
(`dequantize_row_*`), llama.cpp. Little-endian; d, m, dmin are float16; arithmetic in float32 in
the order ggml writes it, so the result is the one ggml computes.

    Q4_0  32 values, 18 B: d, qs[16]             x = (q - 8) * d; q of value j < 16 is the low
                                                 nibble of qs[j], of value 16 + j its high nibble
    Q4_1  32 values, 20 B: d, m, qs[16]          x = q * d + m, nibbles as Q4_0
    Q8_0  32 values, 34 B: d, qs[32] int8        x = q * d
    Q4_K  256 values, 144 B: d, dmin, scales[12], qs[128]
          8 sub-blocks of 32 with 6-bit scale sc and min m packed in `scales` (get_scale_min_k4);
          x = (d * sc) * q - dmin * m; qs[32i:32i+32] holds sub-block 2i in its low nibbles and
          2i + 1 in its high nibbles
    Q5_K  256 values, 176 B: d, dmin, scales[12], qh[32], qs[128]
          as Q4_K with a fifth bit: bit k of qh[l] is the high bit of value l of sub-block k
    Q6_K  256 values, 210 B: ql[128], qh[64], scales[16] int8, d
          two halves of 128; in half h, value 32g + l (g < 4, l < 32) has its low 4 bits in
          ql[64h + l + 32 (g % 2)] (low nibble for g < 2, high for g >= 2) and its high 2 bits in
          qh[32h + l] at bits 2g; x = (d * scales[e // 16]) * (q - 32) for value e of the block
"""

from __future__ import annotations

import numpy as np

# ggml_type (the `GGMLQuantizationType` enum of the gguf package) -> name.
F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 3, 8, 12, 13, 14, 30
TYPE_NAMES = {F32: "F32", F16: "F16", BF16: "BF16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q8_0: "Q8_0",
              Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K"}  # fmt: skip

# ggml_type -> (values per block, bytes per block), as ggml's type traits give them.
BLOCK_SIZES = {
    F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q4_0: (32, 18), Q4_1: (32, 20), Q8_0: (32, 34),
    Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210),
}  # fmt: skip


def type_name(ggml_type: int) -> str:
    """The type's name: ours for the supported ones, the gguf package's for the others."""
    if int(ggml_type) in TYPE_NAMES:
        return TYPE_NAMES[int(ggml_type)]
    try:
        from gguf import GGMLQuantizationType

        return GGMLQuantizationType(int(ggml_type)).name
    except (ImportError, ValueError):
        return f"ggml type {int(ggml_type)}"


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values (`shape`, numpy order) of a tensor stored as `raw` bytes of `ggml_type`."""
    ggml_type = int(ggml_type)
    if ggml_type not in BLOCK_SIZES:
        raise ValueError(f"{type_name(ggml_type)} tensors are not supported; supported: {', '.join(TYPE_NAMES.values())}")
    return _DECODERS[ggml_type](_blocks(raw, ggml_type, shape)).reshape(shape)


def q8_0_values(raw: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A Q8_0 tensor of `shape` as stored: int8 values q (`shape`) and float32 scales d (`shape`
    with the last dimension / 32), x = q * d per block; rows never share a block (ggml blocks run
    along the last dimension, which must be a multiple of 32)."""
    if not shape or shape[-1] % 32:
        raise ValueError(f"Q8_0 rows must hold whole blocks of 32 values, got shape {list(shape)}")
    b = _blocks(raw, Q8_0, shape)
    q = b[:, 2:34].view(np.int8).reshape(shape)
    return np.ascontiguousarray(q), _half(b[:, 0:2]).reshape(*shape[:-1], shape[-1] // 32)


def _blocks(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """raw as (n_blocks, bytes per block), checked to hold the values of `shape`."""
    count = int(np.prod(shape, dtype=np.int64))
    block_values, block_bytes = BLOCK_SIZES[ggml_type]
    data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    if count % block_values or data.size != count // block_values * block_bytes:
        raise ValueError(
            f"{type_name(ggml_type)} data of {data.size} bytes does not hold {count} values "
            f"(blocks of {block_values} values in {block_bytes} bytes)"
        )
    return data.reshape(-1, block_bytes)


def _half(columns: np.ndarray) -> np.ndarray:
    """(n, 2) bytes -> (n, 1) float32 of the little-endian float16 they hold."""
    return np.ascontiguousarray(columns).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(..., n) bytes -> (..., 2, n): the low nibbles, then the high nibbles."""
    return np.stack([qs & 0x0F, qs >> 4], axis=-2)


def _f32(b: np.ndarray) -> np.ndarray:
    return b.view("<f4").reshape(-1).astype(np.float32, copy=False)


def _f16(b: np.ndarray) -> np.ndarray:
    return b.view("<f2").reshape(-1).astype(np.float32)


def _bf16(b: np.ndarray) -> np.ndarray:
    # bfloat16 is the high half of a float32: widen exactly by shifting its bits up.
    return (b.view("<u2").reshape(-1).astype(np.uint32) << 16).view(np.float32)


def _q4_0(b: np.ndarray) -> np.ndarray:
    d = _half(b[:, 0:2])
    q = _nibbles(b[:, 2:18]).reshape(-1, 32).astype(np.int8) - np.int8(8)
    return q.astype(np.float32) * d


def _q4_1(b: np.ndarray) -> np.ndarray:
    d, m = _half(b[:, 0:2]), _half(b[:, 2:4])
    return _nibbles(b[:, 4:20]).reshape(-1, 32).astype(np.float32) * d + m


def _q8_0(b: np.ndarray) -> np.ndarray:
    d = _half(b[:, 0:2])
    return b[:, 2:34].view(np.int8).astype(np.float32) * d


def _k_scales(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: the 8 sub-block scales and mins (n, 8) of bytes 4..16 as float32.

    get_scale_min_k4: for j < 4, sc = s[j] & 63 and m = s[j + 4] & 63; for j >= 4 the low 4 bits
    come from s[j + 4] (scale: low nibble, min: high nibble) and the top 2 from s[j - 4] (scale)
    or s[j] (min), bits 6-7."""
    s = b[:, 4:16]
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc.astype(np.float32), m.astype(np.float32)


def _k_combine(b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """x = (d * sc) * q - dmin * m for q (n, 8, 32): Q4_K and Q5_K share it."""
    d, dmin = _half(b[:, 0:2]), _half(b[:, 2:4])
    sc, m = _k_scales(b)
    return ((d * sc)[:, :, None] * q.astype(np.float32) - (dmin * m)[:, :, None]).reshape(-1, 256)


def _q4_k(b: np.ndarray) -> np.ndarray:
    q = _nibbles(b[:, 16:144].reshape(-1, 4, 32)).reshape(-1, 8, 32)  # (n, 4 pairs, lo/hi, 32)
    return _k_combine(b, q)


def _q5_k(b: np.ndarray) -> np.ndarray:
    low = _nibbles(b[:, 48:176].reshape(-1, 4, 32)).reshape(-1, 8, 32)
    high = (b[:, None, 16:48] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1  # (n, 8, 32)
    return _k_combine(b, low | (high << 4))


def _q6_k(b: np.ndarray) -> np.ndarray:
    # (n, half, lo/hi, 64 bytes) -> groups g = 0..3: lo(first 32), lo(second 32), hi(first), hi(second)
    low = _nibbles(b[:, 0:128].reshape(-1, 2, 64)).reshape(-1, 2, 4, 32)
    qh = b[:, 128:192].reshape(-1, 2, 1, 32)
    high = (qh >> np.array([0, 2, 4, 6], dtype=np.uint8)[None, None, :, None]) & 3  # (n, half, g, 32)
    q = ((low | (high << 4)).astype(np.int8) - np.int8(32)).reshape(-1, 16, 16)  # (n, scale, 16)
    d = _half(b[:, 208:210])
    scales = b[:, 192:208].view(np.int8).astype(np.float32)
    return ((d * scales)[:, :, None] * q.astype(np.float32)).reshape(-1, 256)


_DECODERS = {F32: _f32, F16: _f16, BF16: _bf16, Q4_0: _q4_0, Q4_1: _q4_1, Q8_0: _q8_0,
             Q4_K: _q4_k, Q5_K: _q5_k, Q6_K: _q6_k}  # fmt: skip
