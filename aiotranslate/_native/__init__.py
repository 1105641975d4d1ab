"""The compiled kernels (built from `native/` by meson), loaded on demand.

`load(name)` returns the extension module, or None when it is missing (a source checkout without a
build) or disabled with AIOTRANSLATE_NO_NATIVE=1; ops then fall back to `ops.reference`.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

_DISABLED = os.environ.get("AIOTRANSLATE_NO_NATIVE", "") not in ("", "0")
_cache: dict[str, ModuleType | None] = {}


def load(name: str) -> ModuleType | None:
    if name not in _cache:
        module = None
        if not _DISABLED:
            try:
                module = importlib.import_module(f"{__name__}.{name}")
            except ImportError:
                module = None
        _cache[name] = module
    return _cache[name]
