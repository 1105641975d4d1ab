"""The public engines: awaitable, batched, cancellable, backpressured."""

from .encoder import Encoder, EncoderForwardOutput
from .generator import Generator
from .translator import Translator

__all__ = ["Encoder", "EncoderForwardOutput", "Generator", "Translator"]
