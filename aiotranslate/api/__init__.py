"""The public engines: awaitable, batched, cancellable, backpressured."""

from .bulk import BulkResults
from .encoder import Encoder, EncoderForwardOutput
from .files import ExecutionStats
from .generator import Generator
from .model_engine import ModelNotLoaded
from .translator import Translator

__all__ = [
    "BulkResults",
    "Encoder",
    "EncoderForwardOutput",
    "ExecutionStats",
    "Generator",
    "ModelNotLoaded",
    "Translator",
]
