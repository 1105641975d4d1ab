"""`to_device`: a loaded model's twin on one GPU, made once per GPU and shared read-only by that
GPU's workers (the host model stays as it is: the CPU path and the other GPUs copy from it).

A pass over the weight tree, like `layers.quantized.quantize_model`: it walks the model's
attributes (lists, tuples, dicts and our own objects) and builds a twin in which every float numpy
array is a C-contiguous cupy array on the device, in the compute dtype: float32, or float16 (the
kernels and cuBLAS accumulate in float32). With bfloat16, every `Linear` and `Embedding` becomes
its bf16 twin (`models.device_bf16`: weights as bf16 bits, activations float32) and every other
float array is float32; the GPU must have compute capability 8.0 or later, else a clear error.
Objects reached twice stay shared (a tied output projection reads the embedding's device table,
in bf16 too). Integer arrays stay on the host: they are indices read by the host-side code. An
object whose arrays need more than that defines `_on_device(move)` and returns its own twin
(`layers.positions.Rotary`: float32 tables).

Supported: the Transformer models built from `layers` (decoder-only, encoder-decoder, encoder-only)
in float weights. Not supported, with a clear error: quantized linears (int8 and the CPU's packed
bfloat16 have CPU kernels only) and the Bergamot RNN-decoder model.
What it is not: choosing the device or the dtype (`api.loading`), streams (the engines' workers).
"""

from __future__ import annotations

import copy

import numpy as np

from ..backends.devices import missing_cupy
from ..layers.embeddings import Embedding
from ..layers.linear import Linear
from ..layers.quantized import BF16Linear, Int8Linear
from .bert import EncoderModel
from .decoder_only import DecoderOnlyModel
from .device_bf16 import BF16DeviceEmbedding, BF16DeviceLinear, bf16_bits
from .seq2seq import EncoderDecoderModel

DEVICE_MODELS = (DecoderOnlyModel, EncoderDecoderModel, EncoderModel)
# compute dtype -> the dtype of the float arrays (bfloat16: those that stay float, beside bf16 layers)
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.float32}
BF16_MIN_CAPABILITY = 80  # compute capability 8.0 (Ampere): bfloat16 GEMMs in cuBLAS
OWN_MODULES = ("aiotranslate.layers.", "aiotranslate.models.")  # the objects that hold weights


def cuda_compute_capability(device_index: int) -> int:
    """The compute capability of GPU `device_index` as major * 10 + minor (80 for 8.0)."""
    import cupy

    return int(cupy.cuda.Device(device_index).compute_capability)


def to_device(model, device_index: int = 0, dtype: str = "float32"):
    """The twin of `model` on GPU `device_index` with float weights in `dtype` ("float32", "float16"
    or "bfloat16")."""
    if not isinstance(model, DEVICE_MODELS):
        raise ValueError(f"{type(model).__name__} runs on the CPU only (device='cpu')")
    if dtype not in DTYPES:
        raise ValueError(f"weights on the GPU are float32, float16 or bfloat16, not {dtype!r}")
    try:
        import cupy
    except ImportError as e:
        raise missing_cupy() from e
    capability = cuda_compute_capability(device_index) if dtype == "bfloat16" else None
    if capability is not None and capability < BF16_MIN_CAPABILITY:
        raise ValueError(
            f"GPU {device_index} (compute capability {capability // 10}.{capability % 10}) has no bfloat16 "
            "GEMMs (8.0 or later needed): use compute_type float16 or float32"
        )

    def move(a: np.ndarray, as_type=None):
        return cupy.ascontiguousarray(cupy.asarray(a, dtype=as_type or DTYPES[dtype]))

    with cupy.cuda.Device(device_index):
        twin = _twin(model, move, {}, dtype == "bfloat16")
        # The copies ran on this thread's stream; the workers read them from their own streams.
        cupy.cuda.runtime.deviceSynchronize()
    return twin


def _twin(obj, move, memo: dict[object, object], bf16: bool):
    """obj with its float arrays moved (bf16: its linears and embeddings made bfloat16); each object
    (by identity) is copied once."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, (Int8Linear, BF16Linear)):
        raise ValueError(f"{type(obj).__name__} has CPU kernels only: use a float compute_type on the GPU")
    if bf16 and isinstance(obj, Linear):
        bias = None if obj.bias is None else move(obj.bias)
        twin = BF16DeviceLinear(_bf16_table(obj.weight, move, memo), bias)
    elif bf16 and isinstance(obj, Embedding):
        twin = BF16DeviceEmbedding(_bf16_table(obj.table, move, memo), obj.scale)
    elif isinstance(obj, np.ndarray):
        twin = move(obj) if np.issubdtype(obj.dtype, np.floating) else obj
    elif isinstance(obj, list):
        twin = memo[key] = []
        twin.extend(_twin(x, move, memo, bf16) for x in obj)
    elif isinstance(obj, tuple):
        twin = tuple(_twin(x, move, memo, bf16) for x in obj)
    elif isinstance(obj, dict):
        twin = memo[key] = {}
        twin.update((k, _twin(v, move, memo, bf16)) for k, v in obj.items())
    elif hasattr(obj, "_on_device"):
        twin = obj._on_device(move)
    elif type(obj).__module__.startswith(OWN_MODULES) and hasattr(obj, "__dict__"):
        twin = memo[key] = copy.copy(obj)
        vars(twin).update((name, _twin(value, move, memo, bf16)) for name, value in vars(obj).items())
    else:
        twin = obj  # numbers, strings, configs: shared as they are
    memo[key] = twin
    return twin


def _bf16_table(a: np.ndarray, move, memo: dict[object, object]):
    """The bf16 device copy of float matrix a, made once per host array: a tied embedding table
    and the output projection that reads it share one copy."""
    key = ("bf16", id(a))
    if key not in memo:
        memo[key] = move(bf16_bits(a), np.uint16)
    return memo[key]
