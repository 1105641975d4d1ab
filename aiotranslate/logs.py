"""CTranslate2's `set_log_level` / `get_log_level`, on the "aiotranslate" logger (the server logs
under it). Levels are the `logging` module's."""

from __future__ import annotations

import logging

_logger = logging.getLogger("aiotranslate")


def set_log_level(level: int) -> None:
    _logger.setLevel(level)


def get_log_level() -> int:
    return _logger.getEffectiveLevel()
