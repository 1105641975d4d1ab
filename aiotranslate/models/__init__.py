"""Model architectures: forward passes over `layers`, each behind the `base.DecoderModel` contract.

load_model(path)      a model directory -> a model (registry.LOADERS dispatches on model_type)
DecoderOnlyModel      GPT-2, Llama, Mistral, Qwen2, Qwen3 (`decoder_only`, weights: `gpt2`, `llama`)
"""

from .base import DecoderModel, DecoderState
from .decoder_only import DecoderOnlyModel, DecoderOnlyState
from .registry import LOADERS, load_model, supported_model_types

__all__ = [
    "LOADERS",
    "DecoderModel",
    "DecoderOnlyModel",
    "DecoderOnlyState",
    "DecoderState",
    "load_model",
    "supported_model_types",
]
