"""The compute forms of `Linear` on the CPU and the pass that puts them into a loaded model.

- `PackedLinear`: the float32 weight packed once into the panels of the GEMM kernels
  (`ops.PackedWeight`): what compute type float32 runs.

- `Int8Linear`: an int8 weight and a float32 bias, in one of three schemes (`ops.int8_linear`):
  - per row (`ops.Int8Weight`): one scale per output row; each call quantizes x per row and
    multiplies in int32 (W8A8, CTranslate2's int8);
  - weight-only (`ops.quantized.Int8WeightOnly`): one scale per block of 32 values along K; x stays
    float32 and the products are summed in float32 (the weight dequantized in registers);
  - blocks (`ops.quantized.Int8BlockWeight`): one scale per block of 32 for the weight and for x,
    int32 block products (llama.cpp's Q8_0 x Q8_0 arithmetic).
  An `IntgemmLinear` (a checkpoint of Marian's "8bit alpha" kind) becomes, as weight type "int8", an
  `Int8Linear` that quantizes x with the checkpoint's fixed input multiplier and runs intgemm's
  arithmetic instead (`ops.quantized.IntgemmInput`).
- `BF16Linear`: the weight rounded to bfloat16 (`ops.BF16Weight`), products summed in float32.

All have `Linear`'s call (`activation=`, `residual=`, `out=`, `n_threads=`), `in_features`,
`out_features`, `bias` and `select(rows)`, which is all layers and models use: they run unchanged.

`quantize_model` is the pass over a loaded model: it replaces every `Linear` it reaches through the
model's attributes (lists, tuples and dicts included), keeping shared layers shared (tied decoder
layers). A `Linear` carrying its checkpoint's int8 values (`Linear.int8`) becomes an `Int8Linear` of
exactly those values and scales (per row, or the blocks of GGUF Q8_0), with no float round trip.
Embedding tables stay float32: a gather reads a few rows per token, and a tied output projection
gets its own quantized copy.

Which int8: compute type int8 gives each model the weight type its `int8_weights` names
(`api.compute_type.weight_types`): "int8_weight_only" for the Llama family (Llama, Mistral, Qwen,
SmolLM2; every GGUF file) and Bergamot (models/bergamot.py has its measurements), "int8" (per row)
for the others (Marian, BART, BERT, GPT-2, whose speed against CTranslate2 int8 rests on the int32
products). Measured on SmolLM2-135M (its Q4_1 GGUF
dequantized; greedy, 50 prompts x 12 tokens, tokens equal to float32's position by position; the
teacher-forced next tokens of 40 texts x 12 positions in parentheses):
    per-row weights and activations (W8A8)            52.8%  (88.3%)
    blocks of 32 for weights and activations          79-81% (93-95%)
    weight-only, blocks of 32                          92.0%  (97.5%)
    weight-only, output projection's Q8_0 in blocks    82.0%  (96.7%)   (x quantized per block there)
    weight-only per row (simulated)                    76.7%
Rounding the activations to 8 bits is what drives the divergence (LLM activations have outlier
channels that set a whole row's scale); blocks of 32 keep a weight outlier in its block. So the
Llama family runs weight-only, the file's Q8_0 values included (llama.cpp quantizes x to Q8_0
there; on our float32 activations the same values compute the dequantized float32 model, to the
order of the sums). On the OPUS-MT shape per-row W8A8 already agrees with float32 on >= 90% of the
tokens (tests/models/test_int8.py), and is faster. "int8_blocks" (no compute type names it) keeps
the blocks scheme for measuring (benchmarks/smollm2.py).
Speed on SmolLM2, 1 thread (`python benchmarks/smollm2.py`, two runs on a shared Zen 4), generated
tokens/s at batch 1 and 8: weight-only 82.8-95.9 and 240-247, per-row W8A8 81.8-115 and 513-537,
float32 35.6-47.5 and 262-265, CTranslate2 int8 46.0-49.0 and 251-252. Weight-only decodes about 2x
faster than float32 at batch 1 (a quarter of the weight bytes) but converts each weight to float32
in registers, so at batch 8 and over a 32-token prompt it runs near float32's speed (prompt 323-456
tokens/s, float32 372-471) where W8A8's int8 products run 2.6-3.2x faster.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..ops.quantized import BLOCK, Int8BlockWeight, Int8WeightOnly, IntgemmInput, int8_linear_static
from . import weight_memory
from .linear import Linear, WeightShape, freeze


class IntgemmLinear(Linear):
    """A float32 `Linear` read from an intgemm8 checkpoint with fixed input multipliers (Marian's
    "8bit alpha" models): besides `int8`, the weight's multipliers (N,) (w = int8 / multiplier; a
    fused layer keeps each part's) and the one multiplier its input is quantized with. As float32 it
    is the Linear it is; the int8 pass runs intgemm's arithmetic on it."""

    def __init__(self, linear: Linear, weight_multipliers: np.ndarray, input_multiplier: float):
        if linear.int8 is None:
            raise ValueError("an IntgemmLinear needs the checkpoint's int8 values")
        super().__init__(linear.weight, linear.bias, int8=linear.int8)
        rows = linear.weight.shape[:1]
        self.weight_multipliers = freeze(np.broadcast_to(np.asarray(weight_multipliers, np.float32), rows).copy())
        self.input_multiplier = float(input_multiplier)

    @classmethod
    def fuse(cls, parts) -> IntgemmLinear:
        """Parts that read the same input (fused QKV): one input multiplier, which they must share."""
        multipliers = {p.input_multiplier for p in parts}
        if len(multipliers) != 1:
            raise ValueError(f"fused intgemm layers must share their input multiplier, got {sorted(multipliers)}")
        fused = Linear.fuse(parts)
        return cls(fused, np.concatenate([p.weight_multipliers for p in parts]), multipliers.pop())


class _PackedForm(WeightShape):
    """A linear whose weight the kernels read in their own layout (`weight`: shape (N, K) and
    select(rows)) and a float32 bias; `op` names its function in `ops` (x, weight, bias, ...), looked up
    at each call so that a profiler can wrap it (benchmarks/decode.py --profile)."""

    op: str

    def __init__(self, weight, bias: np.ndarray | None = None):
        if bias is not None and (bias.shape != weight.shape[:1] or bias.dtype != np.float32):
            raise ValueError(f"bias must be float32 ({weight.shape[0]},), got {bias.dtype} {bias.shape}")
        self.weight = weight
        self.bias = None if bias is None else freeze(bias)

    def select(self, rows: np.ndarray):
        return type(self)(self.weight.select(rows), None if self.bias is None else self.bias[rows])

    def __call__(self, x, *, activation=None, residual=None, out=None, n_threads=1) -> np.ndarray:
        """x (..., K) -> (..., N)."""
        return getattr(ops, self.op)(
            x, self.weight, self.bias, activation=activation, residual=residual, out=out, n_threads=n_threads
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_features} -> {self.out_features}, bias={self.bias is not None})"


class Int8Linear(_PackedForm):
    op = "int8_linear"

    def __init__(
        self,
        weight: ops.Int8Weight | Int8BlockWeight | Int8WeightOnly,
        bias: np.ndarray | None = None,
        intgemm: IntgemmInput | None = None,
    ):
        super().__init__(weight, bias)
        self.intgemm = intgemm  # None: x quantized as the weight says (per row, per block, not at all)

    @classmethod
    def from_linear(cls, linear: Linear) -> Int8Linear:
        if isinstance(linear, IntgemmLinear):
            weight = ops.Int8Weight.from_int8(*linear.int8)
            prep = IntgemmInput.prepare(weight, linear.input_multiplier, linear.weight_multipliers, linear.bias)
            return cls(weight, linear.bias, prep)
        if linear.int8 is not None:
            blocks = linear.int8[1].ndim == 2  # scales (N, K/32): GGUF Q8_0
            return cls((Int8BlockWeight if blocks else ops.Int8Weight).from_int8(*linear.int8), linear.bias)
        return cls(ops.Int8Weight.quantize(linear.weight), linear.bias)

    @classmethod
    def in_blocks(cls, linear: Linear) -> Int8Linear:
        """As `from_linear`, but a float weight whose K is a multiple of 32 is quantized per block of 32
        (`Int8BlockWeight.quantize`), not per row: the "int8_blocks" weight type of `quantize_model`."""
        if linear.int8 is None and linear.in_features % BLOCK == 0:
            return cls(Int8BlockWeight.quantize(linear.weight), linear.bias)
        return cls.from_linear(linear)

    @classmethod
    def weight_only(cls, linear: Linear) -> Int8Linear:
        """Weight-only int8 (`Int8WeightOnly`: x stays float32) where K is a multiple of 32: the int8
        values a checkpoint stores as they are (GGUF Q8_0's blocks; per-row scales, as Bergamot's,
        repeated over the row's blocks), a float weight quantized per block of 32; other weights as
        `from_linear`. The "int8_weight_only" weight type of `quantize_model`."""
        if linear.in_features % BLOCK:
            return cls.from_linear(linear)
        if linear.int8 is None:
            return cls(Int8WeightOnly.quantize(linear.weight), linear.bias)
        q, scales = linear.int8
        if scales.ndim == 1:  # per row: the same scale for each block of the row
            scales = np.repeat(scales[:, None], linear.in_features // BLOCK, axis=1)
        return cls(Int8WeightOnly.from_int8(q, scales), linear.bias)

    def select(self, rows: np.ndarray) -> Int8Linear:
        weight = self.weight.select(rows)
        intgemm = None if self.intgemm is None else self.intgemm.select(rows, len(weight.data[-1]))
        return Int8Linear(weight, None if self.bias is None else self.bias[rows], intgemm)

    def __call__(self, x, *, activation=None, residual=None, out=None, n_threads=1) -> np.ndarray:
        """x (..., K) -> (..., N)."""
        if self.intgemm is not None:
            return int8_linear_static(
                x, self.weight, self.intgemm, activation=activation, residual=residual, out=out, n_threads=n_threads
            )
        return super().__call__(x, activation=activation, residual=residual, out=out, n_threads=n_threads)


class PackedLinear(_PackedForm):
    op = "linear"

    @classmethod
    def from_linear(cls, linear: Linear) -> PackedLinear:
        return cls(ops.PackedWeight.pack(linear.weight), linear.bias)


class BF16Linear(_PackedForm):
    op = "bf16_linear"

    @classmethod
    def from_linear(cls, linear: Linear) -> BF16Linear:
        return cls(ops.BF16Weight.from_float(linear.weight), linear.bias)


# Weight types of the pass -> the conversion of a float32 Linear.
CONVERSIONS = {
    "float32": PackedLinear.from_linear,
    "int8": Int8Linear.from_linear,
    "int8_blocks": Int8Linear.in_blocks,  # no compute type names it: for measuring it against the others
    "int8_weight_only": Int8Linear.weight_only,
    "bfloat16": BF16Linear.from_linear,
}
# Attributes naming a model's output projection (decoder-only and seq2seq models, Bergamot).
OUTPUT_NAMES = ("lm_head", "output")


def quantize_model(model, weights: str, output: str | None = None):
    """Replace, in place, every `Linear` of `model` by its `weights` form ("int8", "bfloat16",
    "float32": packed) and the output projection (`model.lm_head` or `model.output`) by its
    `output` form (default: `weights`). Returns the model."""
    for kind in (weights, output):
        if kind is not None and kind not in CONVERSIONS:
            raise ValueError(f"unknown weight type {kind!r}; expected one of {sorted(CONVERSIONS)}")
    memo: dict[int, object] = {}
    for name in OUTPUT_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, Linear) and output is not None:
            memo[id(head)] = CONVERSIONS[output](head)
    _walk(model, CONVERSIONS[weights], memo, set())
    weight_memory.gather(memo.values())
    return model


def _walk(obj, convert, memo: dict[int, object], seen: set[int]) -> None:
    """Replace the Linears held by obj's attributes or items, descending into our own objects."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            obj[i] = _visit(item, convert, memo, seen)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            obj[key] = _visit(item, convert, memo, seen)
    elif type(obj).__module__.startswith("aiotranslate.") and hasattr(obj, "__dict__"):
        for key, item in vars(obj).items():
            new = _visit(item, convert, memo, seen)
            if new is not item:
                setattr(obj, key, new)


def _visit(item, convert, memo: dict[int, object], seen: set[int]):
    """item, or what replaces it (a Linear converted once however often it is reached)."""
    if isinstance(item, Linear):
        if id(item) not in memo:
            memo[id(item)] = convert(item)
        return memo[id(item)]
    if isinstance(item, tuple):
        new = tuple(_visit(x, convert, memo, seen) for x in item)
        return item if all(a is b for a, b in zip(new, item)) else new
    if isinstance(item, (list, dict)) or type(item).__module__.startswith("aiotranslate."):
        _walk(item, convert, memo, seen)
    return item
