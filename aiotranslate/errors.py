"""The exceptions aiotranslate raises on purpose (besides ValueError/TypeError for bad arguments)."""


class ModelLoadError(Exception):
    """A model directory or file cannot be loaded: the message names the file and, where it
    applies, the tensor or config key at fault."""
