"""`to_device`: a loaded model's twin on one GPU, made once per GPU and shared read-only by that
GPU's workers (the host model stays as it is: the CPU path and the other GPUs copy from it).

A pass over the weight tree, like `layers.quantized.quantize_model`: it walks the model's
attributes (lists, tuples, dicts and our own objects) and builds a twin in which every float numpy
array is a C-contiguous cupy array on the device, in the compute dtype: float32, or float16 (the
kernels and cuBLAS accumulate in float32). Objects reached twice stay shared (a tied output
projection reads the embedding's device table). Integer arrays stay on the host: they are indices
read by the host-side code. An object whose arrays need more than that defines
`_on_device(move)` and returns its own twin (`layers.positions.Rotary`: float32 tables).

Supported: the Transformer models built from `layers` (decoder-only, encoder-decoder, encoder-only)
in float weights. Not supported, with a clear error: quantized linears (int8 and bfloat16 have CPU
kernels only) and the Bergamot RNN-decoder model.
What it is not: choosing the device or the dtype (`api.loading`), streams (the engines' workers).
"""

from __future__ import annotations

import copy

import numpy as np

from ..backends.devices import missing_cupy
from ..layers.quantized import BF16Linear, Int8Linear
from .bert import EncoderModel
from .decoder_only import DecoderOnlyModel
from .seq2seq import EncoderDecoderModel

DEVICE_MODELS = (DecoderOnlyModel, EncoderDecoderModel, EncoderModel)
DTYPES = {"float32": np.float32, "float16": np.float16}
OWN_MODULES = ("aiotranslate.layers.", "aiotranslate.models.")  # the objects that hold weights


def to_device(model, device_index: int = 0, dtype: str = "float32"):
    """The twin of `model` on GPU `device_index` with float weights in `dtype` ("float32", "float16")."""
    if not isinstance(model, DEVICE_MODELS):
        raise ValueError(f"{type(model).__name__} runs on the CPU only (device='cpu')")
    if dtype not in DTYPES:
        raise ValueError(f"weights on the GPU are float32 or float16, not {dtype!r}")
    try:
        import cupy
    except ImportError as e:
        raise missing_cupy() from e

    def move(a: np.ndarray, as_type=None):
        return cupy.ascontiguousarray(cupy.asarray(a, dtype=as_type or DTYPES[dtype]))

    with cupy.cuda.Device(device_index):
        twin = _twin(model, move, {})
        # The copies ran on this thread's stream; the workers read them from their own streams.
        cupy.cuda.runtime.deviceSynchronize()
    return twin


def _twin(obj, move, memo: dict[int, object]):
    """obj with its float arrays moved; each object (by identity) is copied once."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, (Int8Linear, BF16Linear)):
        raise ValueError(f"{type(obj).__name__} has CPU kernels only: use a float compute_type on the GPU")
    if isinstance(obj, np.ndarray):
        twin = move(obj) if np.issubdtype(obj.dtype, np.floating) else obj
    elif isinstance(obj, list):
        twin = memo[key] = []
        twin.extend(_twin(x, move, memo) for x in obj)
    elif isinstance(obj, tuple):
        twin = tuple(_twin(x, move, memo) for x in obj)
    elif isinstance(obj, dict):
        twin = memo[key] = {}
        twin.update((k, _twin(v, move, memo)) for k, v in obj.items())
    elif hasattr(obj, "_on_device"):
        twin = obj._on_device(move)
    elif type(obj).__module__.startswith(OWN_MODULES) and hasattr(obj, "__dict__"):
        twin = memo[key] = copy.copy(obj)
        vars(twin).update((name, _twin(value, move, memo)) for name, value in vars(obj).items())
    else:
        twin = obj  # numbers, strings, configs: shared as they are
    memo[key] = twin
    return twin
