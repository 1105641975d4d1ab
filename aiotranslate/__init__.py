"""aiotranslate: an asyncio-native inference engine for Transformer models."""

from ._config import show_config
from ._version import __version__

__all__ = ["__version__", "show_config"]
