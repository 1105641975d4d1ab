"""Readers of model directories as Hugging Face writes them: config.json, generation_config.json and
safetensors weights (single file or sharded). Architectures live in `aiotranslate.models`."""

from .checkpoint import Checkpoint
from .config import GenerationConfig, HFConfig, rope_parameters

__all__ = ["Checkpoint", "GenerationConfig", "HFConfig", "rope_parameters"]
