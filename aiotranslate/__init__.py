"""aiotranslate: an asyncio-native inference engine for Transformer models."""

from ._config import show_config
from ._version import __version__
from .api import BulkResults, Encoder, EncoderForwardOutput, ExecutionStats, Generator, Translator
from .api.compute_type import get_supported_compute_types
from .backends.devices import get_cuda_device_count
from .decoding.sampling import set_random_seed
from .errors import EngineClosed, ModelLoadError, ModelNotLoaded, QueueFull
from .logs import get_log_level, set_log_level
from .models.registry import contains_model
from .results import GenerationResult, GenerationStepResult, ScoringResult, TranslationResult
from .runtime.mpi import MpiInfo

__all__ = [
    "BulkResults",
    "Encoder",
    "EncoderForwardOutput",
    "EngineClosed",
    "ExecutionStats",
    "GenerationResult",
    "GenerationStepResult",
    "Generator",
    "ModelLoadError",
    "ModelNotLoaded",
    "MpiInfo",
    "QueueFull",
    "ScoringResult",
    "TranslationResult",
    "Translator",
    "__version__",
    "contains_model",
    "get_cuda_device_count",
    "get_log_level",
    "get_supported_compute_types",
    "set_log_level",
    "set_random_seed",
    "show_config",
]
