"""Linear products with 8- and 16-bit weights: `int8_linear` and `bf16_linear`, the compute types
int8 and bfloat16 of the quantized layers (`layers.quantized`).

- `Int8Weight`: W (N, K) as int8 values q and one float32 scale per output row, W ~ scales[:, None] * q
  (symmetric: scale = max|W[j]| / 127, `reference.quantize_rows`). Built from a float matrix
  (`quantize`) or from values a checkpoint already stores in int8 (`from_int8`: Bergamot's intgemm8).
  `int8_linear` quantizes each row of x the same way on every call, multiplies in int32 and applies
  the scales, bias, activation and residual in float32.
- `Int8BlockWeight`: W as int8 values with one float32 scale per block of 32 along K (GGUF Q8_0's
  values: `from_int8`, or `quantize` a float matrix the same way); `int8_linear` then quantizes x per
  block of 32 too and sums the int32 block products scaled by both scales (`block_reference`).
- `Int8WeightOnly`: the same values (int8, a float32 scale per block of 32 along K) for float32
  activations: `int8_linear` leaves x as it is and multiplies it with the weight dequantized in the
  kernel's registers, summing in float32 (`weight_only_reference`); int8 only saves the bytes of
  weights read (the float32 kernels' `linear_int8w`, native/gemm_wq_tiles.h).
- `IntgemmInput`: the other activation scheme, Marian's "8bit alpha" models (Bergamot): x quantized
  with a fixed multiplier stored in the model, and intgemm's shifted product with its float bias
  compensation (`int8_linear_static`).
- `BF16Weight`: W rounded to bfloat16; `bf16_linear` rounds x too and accumulates in float32.

All are packed once for the kernels (`native/_qgemm.pyx`, layouts in `native/qgemm_kernels.c`) and
are read-only, shared by every worker thread. `select(rows)` gives the weight of a subset of output rows
(a vocabulary shortlist) without unpacking. Without the extension they keep the plain matrix and
`reference` computes the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _native
from . import _checks, aligned, reference
from .gemm import direct_linear, from_panels, linear_arguments, panel_rows, to_panels

_kernels = _native.load("_qgemm")
_float_kernels = _native.load("_gemm")  # the weight-only product is a float32 one
BLOCK = 32  # values per scale along K of an Int8BlockWeight or Int8WeightOnly (GGUF Q8_0's block)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Int8Weight:
    """An (N, K) weight as int8 values and per-row float32 scales, packed for `int8_linear`.

    data: the packed values and their VNNI compensation terms with the extension, else q itself."""

    shape: tuple[int, int]
    scales: np.ndarray  # float32 (N,)
    data: tuple[np.ndarray, ...]

    @classmethod
    def quantize(cls, w: np.ndarray) -> Int8Weight:
        """Quantize a float32 (N, K) matrix per row (the kernels' own rounding when available)."""
        w = np.ascontiguousarray(w, dtype=np.float32)
        _checks.ndim(w, "w", 2)
        if _kernels is None:
            return cls.from_int8(*reference.quantize_rows(w))
        q = np.empty(w.shape, dtype=np.int8)
        scales = np.empty(w.shape[0], dtype=np.float32)
        _kernels.quantize_rows(w, q, scales)
        return cls.from_int8(q, scales)

    @classmethod
    def from_int8(cls, q: np.ndarray, scales: np.ndarray) -> Int8Weight:
        """W = scales[:, None] * q for q int8 (N, K) and scales (N,) (a scalar is one scale for all rows)."""
        if q.dtype != np.int8 or q.ndim != 2:
            raise ValueError(f"q must be an int8 (N, K) matrix, got {q.dtype} {q.shape}")
        scales = np.ascontiguousarray(np.broadcast_to(np.asarray(scales, dtype=np.float32), q.shape[:1]))
        q = np.ascontiguousarray(q)
        if _kernels is None:
            return cls(q.shape, _frozen(scales), (_frozen(q),))
        n, k = q.shape
        packed = aligned.empty((_kernels.padded_rows(n), _kernels.padded_k_int8(k)), np.int8)
        comp = np.empty(packed.shape[0], dtype=np.int32)
        _kernels.pack_int8(q, packed, comp)
        return cls(q.shape, _frozen(scales), (_frozen(packed), _frozen(comp)))

    def select(self, rows: np.ndarray) -> Int8Weight:
        """The weight of output rows `rows` (in that order)."""
        rows = _checks.row_indices(rows, self.shape[0])
        shape = (len(rows), self.shape[1])
        if _kernels is None:
            return Int8Weight(shape, _frozen(self.scales[rows]), (_frozen(self.data[0][rows]),))
        packed = aligned.empty((_kernels.padded_rows(shape[0]), self.data[0].shape[1]), np.int8)
        _kernels.select_int8(self.data[0], shape[1], rows, packed)
        comp = np.zeros(packed.shape[0], dtype=np.int32)
        comp[: len(rows)] = self.data[1][rows]
        return Int8Weight(shape, _frozen(self.scales[rows]), (_frozen(packed), _frozen(comp)))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.data) + self.scales.nbytes

    def row_sums(self) -> np.ndarray:
        """sum_p q[j, p] per row, int32 (N,) (the packed compensation terms hold 128 times it)."""
        if _kernels is None:
            return self.data[0].sum(axis=1, dtype=np.int32)
        return self.data[1][: self.shape[0]] // 128


@dataclass(frozen=True, eq=False)
class _BlockScaled:
    """An (N, K) weight as int8 values q and float32 scales (N, K/32), one per block of 32 values along
    K: W[j, 32b + t] = scales[j, b] * q[j, 32b + t]. K must be a multiple of 32. Subclasses pack q and
    the scales for their kernel (`from_int8`) into data."""

    shape: tuple[int, int]
    data: tuple[np.ndarray, np.ndarray]

    @classmethod
    def quantize(cls, w: np.ndarray):
        """Quantize a float32 (N, K) matrix per block of 32 (`quantize_blocks`)."""
        return cls.from_int8(*quantize_blocks(w))

    @classmethod
    def from_int8(cls, q: np.ndarray, scales: np.ndarray):
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.data)


@dataclass(frozen=True, eq=False)
class Int8BlockWeight(_BlockScaled):
    """A block-scaled weight (`_BlockScaled`) for activations quantized per block of 32 too.

    data: with the extension, q packed as the kernel reads it and the scales transposed and padded to
    (K/32, padded N); else (q, scales)."""

    @classmethod
    def from_int8(cls, q: np.ndarray, scales: np.ndarray) -> Int8BlockWeight:
        """W = q * scales per block for q int8 (N, K) and scales (N, K/32) (GGUF Q8_0's qs and d)."""
        q, scales = _block_values(q, scales)
        n, k = q.shape
        if _kernels is None:
            return cls(q.shape, (_frozen(q), _frozen(scales)))
        packed = aligned.empty((_kernels.padded_rows(n), k), np.uint8)
        _kernels.pack_int8_blocks(q, packed)
        by_block = aligned.zeros((k // BLOCK, packed.shape[0]), np.float32)
        by_block[:, :n] = scales.T
        return cls(q.shape, (_frozen(packed), _frozen(by_block)))

    def select(self, rows: np.ndarray) -> Int8BlockWeight:
        """The weight of output rows `rows` (in that order)."""
        rows = _checks.row_indices(rows, self.shape[0])
        shape = (len(rows), self.shape[1])
        if _kernels is None:
            return Int8BlockWeight(shape, tuple(_frozen(a[rows]) for a in self.data))
        packed = aligned.empty((_kernels.padded_rows(shape[0]), shape[1]), np.uint8)
        _kernels.select_int8(self.data[0].view(np.int8), shape[1], rows, packed.view(np.int8))  # bytes, any sign
        by_block = aligned.zeros((self.data[1].shape[0], packed.shape[0]), np.float32)
        by_block[:, : len(rows)] = self.data[1][:, rows]
        return Int8BlockWeight(shape, (_frozen(packed), _frozen(by_block)))


def _check_blocks(shape: tuple[int, ...]) -> None:
    if shape[-1] % BLOCK:
        raise ValueError(f"a block-scaled int8 weight needs K a multiple of {BLOCK}, got shape {tuple(shape)}")


def quantize_blocks(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float32 (N, K) matrix quantized per block of 32 along K (symmetric, max|block| / 127 as for
    rows): q int8 (N, K) and scales (N, K/32)."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    _checks.ndim(w, "w", 2)
    _check_blocks(w.shape)
    q, scales = reference.quantize_rows(w.reshape(w.shape[0], w.shape[1] // BLOCK, BLOCK))
    return q.reshape(w.shape), scales


def _block_values(q: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q int8 (N, K) and scales float32 (N, K/32) of a block-scaled weight, checked and contiguous."""
    if q.dtype != np.int8 or q.ndim != 2:
        raise ValueError(f"q must be an int8 (N, K) matrix, got {q.dtype} {q.shape}")
    _check_blocks(q.shape)
    n, k = q.shape
    scales = np.asarray(scales, dtype=np.float32)
    if scales.shape != (n, k // BLOCK):
        raise ValueError(f"scales must have shape {(n, k // BLOCK)} for q {q.shape}, got {scales.shape}")
    return np.ascontiguousarray(q), np.ascontiguousarray(scales)


@dataclass(frozen=True, eq=False)
class Int8WeightOnly(_BlockScaled):
    """A block-scaled weight (`_BlockScaled`) for float32 activations.

    data: with the extension, q in panels of 64 rows stored K-major, (ceil(N/64), K, 64) with q[64t + c, p]
    at [t, p, c], and the scales transposed, (K/32, 64 ceil(N/64)), zero-padded; else (q, scales)."""

    @classmethod
    def from_int8(cls, q: np.ndarray, scales: np.ndarray) -> Int8WeightOnly:
        """W = q * scales per block for q int8 (N, K) and scales (N, K/32) (GGUF Q8_0's qs and d)."""
        q, scales = _block_values(q, scales)
        if _float_kernels is None:
            return cls(q.shape, (_frozen(q), _frozen(scales)))
        packed = to_panels(q)
        by_block = aligned.zeros((q.shape[1] // BLOCK, packed.shape[0] * packed.shape[2]), np.float32)
        by_block[:, : q.shape[0]] = scales.T
        return cls(q.shape, (_frozen(packed), _frozen(by_block)))

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """q (N, K) and scales (N, K/32), as `from_int8` takes them."""
        if _float_kernels is None:
            return self.data
        packed, by_block = self.data
        n = self.shape[0]
        return from_panels(packed, n), by_block[:, :n].T

    def select(self, rows: np.ndarray) -> Int8WeightOnly:
        """The weight of output rows `rows` (in that order)."""
        rows = _checks.row_indices(rows, self.shape[0])
        if _float_kernels is None:
            q, scales = self.data
            return Int8WeightOnly.from_int8(q[rows], scales[rows])
        packed, by_block = self.data  # gather the rows from their panels: no unpacking of the others
        return Int8WeightOnly.from_int8(panel_rows(packed, rows), by_block[:, rows].T)


def weight_only_reference(x: np.ndarray, q: np.ndarray, scales: np.ndarray, bias=None, act: int = 0, residual=None):
    """`int8_linear` of an `Int8WeightOnly` in numpy: W dequantized in float32 (q * scale, one rounding,
    as the kernel's registers hold it), then `reference.linear` (float64 sums: the kernel's float32
    sums agree to rounding)."""
    n, k = q.shape
    w = (q.reshape(n, k // BLOCK, BLOCK).astype(np.float32) * scales[..., None]).reshape(n, k)
    return reference.linear(np.asarray(x, np.float32), w, bias, act, residual)


def block_reference(x: np.ndarray, q: np.ndarray, scales: np.ndarray, bias=None, act: int = 0, residual=None):
    """`int8_linear` of an `Int8BlockWeight` in numpy: x (M, K) quantized per block of 32
    (`reference.quantize_rows` on each block), exact int32 block products, each scaled by both scales,
    summed over the blocks (in float64 here: the kernels' float32 sum agrees to rounding)."""
    m, k = x.shape
    s, xd = reference.quantize_rows(np.asarray(x, np.float32).reshape(m, k // BLOCK, BLOCK))  # (M, K/32, 32), (M, K/32)
    sums = np.einsum("mbt,nbt->mnb", s.astype(np.int64), q.reshape(len(q), k // BLOCK, BLOCK).astype(np.int64))
    y = (sums * (xd.astype(np.float64)[:, None, :] * scales.astype(np.float64)[None])).sum(-1)
    if bias is not None:
        y += bias
    y = reference.activation(y, act).astype(np.float64)
    if residual is not None:
        y += residual
    return y.astype(np.float32)


@dataclass(frozen=True, eq=False)
class IntgemmInput:
    """intgemm's "8bit alpha" product for one `Int8Weight` q (N, K) whose checkpoint multipliers are
    b (N,) (w = q / b[j]) and whose input multiplier a is fixed (Marian's shifted affine:
    browsermt/marian-dev src/tensors/cpu/intgemm_interface.h over kpu/intgemm's Int8Shift):

        u = clamp(rint(x * a), -127, 127) + 127                           PrepareA
        bias'[j] = float(sum_p q[j, p]) * (-((127 / a) * (127 / b[j])) / 127) + bias[j]   PrepareBias
        out[i, j] = float(sum_p u[i, p] q[j, p]) * (1 / (a * b[j])) + bias'[j]      Multiply

    all in float32 as written (bias' is exact compensation of the 127 shift only up to its rounding,
    which is the point: this is the reference engine's arithmetic). The kernel stores s + 128 and
    subtracts `offsets` = sum_p q[j, p], which leaves (s + 127) q exactly in int32."""

    multiplier: float
    unquant: np.ndarray  # float32 (N,)
    bias: np.ndarray  # float32 (N,): bias'
    offsets: np.ndarray  # int32 (padded N,)

    @classmethod
    def prepare(cls, weight: Int8Weight, multiplier: float, b: np.ndarray, bias: np.ndarray | None) -> IntgemmInput:
        a = np.float32(multiplier)
        if not (np.isfinite(a) and a > 0):
            raise ValueError(f"the input multiplier must be positive and finite, got {multiplier}")
        b = np.broadcast_to(np.asarray(b, dtype=np.float32), weight.shape[:1])
        if not (np.isfinite(b).all() and (b > 0).all()):
            raise ValueError("the weight multipliers must be positive and finite")
        sums = weight.row_sums()
        forprep = -((np.float32(127) / a) * (np.float32(127) / b)) / np.float32(127)
        prepared = sums.astype(np.float32) * forprep
        if bias is not None:
            prepared = prepared + np.asarray(bias, dtype=np.float32)
        unquant = np.float32(1) / (a * b)
        offsets = np.zeros(len(weight.data[-1]), dtype=np.int32)  # padded rows (comp), or N without the kernels
        offsets[: len(sums)] = sums
        unquant, prepared = unquant.astype(np.float32), prepared.astype(np.float32)
        return cls(float(a), _frozen(unquant), _frozen(prepared), _frozen(offsets))

    def select(self, rows: np.ndarray, padded: int) -> IntgemmInput:
        """The operands of output rows `rows` for a selected weight of `padded` packed rows."""
        offsets = np.zeros(padded, dtype=np.int32)
        offsets[: len(rows)] = self.offsets[rows]
        return IntgemmInput(self.multiplier, _frozen(self.unquant[rows]), _frozen(self.bias[rows]), _frozen(offsets))


def intgemm_reference(x: np.ndarray, q: np.ndarray, prep: IntgemmInput, act: int = 0, residual=None) -> np.ndarray:
    """`int8_linear_static` in numpy: exact int32 product, then the float32 epilogue."""
    v = x.astype(np.float32) * np.float32(prep.multiplier)
    s = np.where(np.abs(v) < np.float32(2**31), np.clip(np.rint(v), -127, 127), -127).astype(np.int32)
    acc = (s + 127) @ q.astype(np.int32).T
    y = acc.astype(np.float32) * prep.unquant + prep.bias
    y = reference.activation(y, act).astype(np.float32)
    return y if residual is None else (y + residual).astype(np.float32)


@dataclass(frozen=True, eq=False)
class BF16Weight:
    """An (N, K) weight rounded to bfloat16, packed for `bf16_linear` (else kept as float32 values)."""

    shape: tuple[int, int]
    data: np.ndarray

    @classmethod
    def from_float(cls, w: np.ndarray) -> BF16Weight:
        w = np.ascontiguousarray(w, dtype=np.float32)
        _checks.ndim(w, "w", 2)
        if _kernels is None:
            return cls(w.shape, _frozen(reference.bf16_round(w)))
        packed = aligned.empty((_kernels.padded_rows(w.shape[0]), _kernels.padded_k_bf16(w.shape[1])), np.uint16)
        _kernels.pack_bf16(w, packed)
        return cls(w.shape, _frozen(packed))

    def select(self, rows: np.ndarray) -> BF16Weight:
        rows = _checks.row_indices(rows, self.shape[0])
        shape = (len(rows), self.shape[1])
        if _kernels is None:
            return BF16Weight(shape, _frozen(self.data[rows]))
        packed = aligned.empty((_kernels.padded_rows(shape[0]), self.data.shape[1]), np.uint16)
        _kernels.select_bf16(self.data, shape[1], rows, packed)
        return BF16Weight(shape, _frozen(packed))

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


def _prepare(x, shape, bias, residual, out, activation):
    """Checked 2-D views of the arguments of a quantized linear, and the activation code."""
    _checks.host_array(x, "x", "a quantized linear (int8, bfloat16)")
    return linear_arguments(_checks.float_array(x, "x", dtype=np.float32), shape, bias, residual, out, activation)


def _kernel_call(weight: Int8Weight | Int8BlockWeight | Int8WeightOnly) -> tuple:
    """The kernel (None without the extension) and weight arguments of an int8 linear by `weight`."""
    if isinstance(weight, Int8WeightOnly):
        return _float_kernels and _float_kernels.linear_int8w, (*weight.data, weight.shape[0])
    if isinstance(weight, Int8BlockWeight):
        return _kernels and _kernels.int8_block_linear, (*weight.data, weight.shape[0])
    return _kernels and _kernels.int8_linear, (*weight.data, weight.scales)


def int8_linear(x, weight: Int8Weight | Int8BlockWeight | Int8WeightOnly, bias=None, *, activation=None,
                residual=None, out=None, n_threads=1):
    """act(x @ W.T + bias) + residual for float32 x (..., K) and an int8 weight W (N, K) -> (..., N);
    x is quantized as W is: per row for an `Int8Weight` (`reference.int8_linear` is the contract), per
    block of 32 for an `Int8BlockWeight` (`block_reference`), not at all for an `Int8WeightOnly`
    (`weight_only_reference`; out must not overlap x then)."""
    kernel, weight_args = _kernel_call(weight)
    y = direct_linear(kernel, x, weight.shape, weight_args, bias, activation, residual, out, n_threads)
    if y is not None:
        return y
    x2, bias, residual, out, out2, act = _prepare(x, weight.shape, bias, residual, out, activation)
    if kernel is not None:
        kernel(x2, *weight_args, bias, act, residual, out2, n_threads)
    elif isinstance(weight, Int8WeightOnly):
        out2[...] = weight_only_reference(x2, *weight.data, bias, act, residual)
    elif isinstance(weight, Int8BlockWeight):
        out2[...] = block_reference(x2, *weight.data, bias, act, residual)
    else:
        out2[...] = reference.int8_linear(x2, weight.data[0], weight.scales, bias, act, residual)
    return out


def int8_linear_static(x, weight: Int8Weight, prep: IntgemmInput, *, activation=None, residual=None, out=None,
                       n_threads=1):
    """act(intgemm product of x (..., K) and W (N, K) + bias') + residual -> (..., N), x quantized
    with the fixed multiplier of `prep` (`IntgemmInput` states the arithmetic)."""
    weight_args = (prep.multiplier, weight.data[0], prep.offsets, prep.unquant)
    y = direct_linear(_kernels and _kernels.int8_linear_static, x, weight.shape, weight_args, prep.bias, activation,
                      residual, out, n_threads)
    if y is not None:
        return y
    x2, _, residual, out, out2, act = _prepare(x, weight.shape, None, residual, out, activation)
    if _kernels is None:
        out2[...] = intgemm_reference(x2, weight.data[0], prep, act, residual)
    else:
        _kernels.int8_linear_static(x2, *weight_args, prep.bias, act, residual, out2, n_threads)
    return out


def bf16_linear(x, weight: BF16Weight, bias=None, *, activation=None, residual=None, out=None, n_threads=1):
    """act(bf16(x) @ W.T + bias) + residual for float32 x (..., K) and a `BF16Weight` W (N, K), the
    products summed in float32 -> (..., N)."""
    y = direct_linear(_kernels and _kernels.bf16_linear, x, weight.shape, (weight.data, weight.shape[0]), bias,
                      activation, residual, out, n_threads)
    if y is not None:
        return y
    x2, bias, residual, out, out2, act = _prepare(x, weight.shape, bias, residual, out, activation)
    if _kernels is None:
        out2[...] = reference.linear(reference.bf16_round(x2), weight.data, bias, act, residual)
    else:
        _kernels.bf16_linear(x2, weight.data, weight.shape[0], bias, act, residual, out2, n_threads)
    return out


def isa() -> dict[str, str]:
    """The instruction sets the quantized kernels run on: int8 per row and in blocks ('avx512', 'avx2',
    'portable'; '+amx' where 32-row blocks run on AMX tiles), int8 weight-only (the float32 kernels':
    'avx512', 'avx2', 'base') and bfloat16, or 'reference' without the extension."""
    if _kernels is None or _float_kernels is None:
        return dict.fromkeys(("int8", "int8_weight_only", "bfloat16"), "reference")
    return {
        "int8": _kernels.isa() + ("+amx" if _kernels.amx() else ""),
        "int8_weight_only": _float_kernels.instruction_set(),
        "bfloat16": _kernels.bf16_isa(),
    }
