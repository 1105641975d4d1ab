"""The exceptions aiotranslate raises on purpose (besides ValueError/TypeError for bad arguments)."""


class ModelLoadError(Exception):
    """A model directory or file cannot be loaded: the message names the file and, where it
    applies, the tensor or config key at fault."""


class QueueFull(Exception):
    """The admission queue is full: raised at once by the `*_nowait` methods (a web app answers 429)."""


class ModelNotLoaded(RuntimeError):
    """The engine's model was unloaded (`unload_model()`): call `load_model()` first."""


class EngineClosed(RuntimeError):
    """The translator/generator was closed: it accepts no more work."""
