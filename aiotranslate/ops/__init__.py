"""The ops: one family per module. Each checks its arguments, allocates the output unless the caller
passes `out`, and runs the native kernel (or `reference` when the extension is missing).
Every op takes `n_threads`, the OpenMP team size of that one call."""

from .activations import activation, swiglu
from .attention import attention
from .gemm import PackedWeight, batched_matmul, linear
from .norms import layer_norm, rms_norm
from .positions import embedding, rotary, rotary_tables, sinusoidal_table
from .quantized import BF16Weight, Int8Weight, bf16_linear, int8_linear
from .select import argmax, topk
from .softmax import log_softmax, logsumexp, softmax

__all__ = [
    "BF16Weight",
    "Int8Weight",
    "PackedWeight",
    "activation",
    "argmax",
    "attention",
    "batched_matmul",
    "bf16_linear",
    "embedding",
    "int8_linear",
    "layer_norm",
    "linear",
    "log_softmax",
    "logsumexp",
    "rms_norm",
    "rotary",
    "rotary_tables",
    "sinusoidal_table",
    "softmax",
    "swiglu",
    "topk",
]
