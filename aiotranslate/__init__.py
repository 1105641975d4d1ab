"""aiotranslate: an asyncio-native inference engine for Transformer models."""

from ._config import show_config
from ._version import __version__
from .api import Encoder, EncoderForwardOutput, Generator, Translator
from .api.compute_type import get_supported_compute_types
from .backends.devices import get_cuda_device_count
from .errors import EngineClosed, ModelLoadError, QueueFull
from .results import GenerationResult, GenerationStepResult, ScoringResult, TranslationResult
from .runtime.mpi import MpiInfo

__all__ = [
    "Encoder",
    "EncoderForwardOutput",
    "EngineClosed",
    "GenerationResult",
    "GenerationStepResult",
    "Generator",
    "ModelLoadError",
    "MpiInfo",
    "QueueFull",
    "ScoringResult",
    "TranslationResult",
    "Translator",
    "__version__",
    "get_cuda_device_count",
    "get_supported_compute_types",
    "show_config",
]
