"""The compiled kernels (built from `native/` by meson), loaded on demand.

`load(name)` returns the extension module, or None when it is missing (a source checkout without a
build) or disabled with AIOTRANSLATE_NO_NATIVE=1; ops then fall back to `ops.reference`.

AIOTRANSLATE_FORCE_CPU_ISA (AVX512, AVX2 or GENERIC, as CTranslate2's CT2_FORCE_CPU_ISA) caps the
instruction set of the GEMM, attention and quantized kernels, for a CPU that has a higher one: to
reproduce another machine's results or speed. The elementwise kernels keep the clone the CPU picks.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

_DISABLED = os.environ.get("AIOTRANSLATE_NO_NATIVE", "") not in ("", "0")
FORCE_ISA_VARIABLE = "AIOTRANSLATE_FORCE_CPU_ISA"
# Each forced set as the kernels name it: (float32 GEMM and attention, int8 and bfloat16).
_FORCED_NAMES = {"avx512": ("avx512", "avx512"), "avx2": ("avx2", "avx2"), "generic": ("base", "portable")}
_cache: dict[str, ModuleType | None] = {}


def forced_isa() -> str | None:
    """The cap that AIOTRANSLATE_FORCE_CPU_ISA sets, lower-case ('avx512', 'avx2', 'generic'), or None."""
    value = os.environ.get(FORCE_ISA_VARIABLE, "").strip().lower()
    if not value:
        return None
    if value not in _FORCED_NAMES:
        raise ValueError(f"{FORCE_ISA_VARIABLE}={value!r}: expected AVX512, AVX2 or GENERIC")
    return value


def _apply_forced_isa(name: str, module: ModuleType) -> None:
    forced = forced_isa()
    if forced is None:
        return
    gemm_name, quantized_name = _FORCED_NAMES[forced]
    if name == "_gemm":
        best = module.INSTRUCTION_SETS.index(module.instruction_set())
        module._use_instruction_set(module.INSTRUCTION_SETS[min(best, module.INSTRUCTION_SETS.index(gemm_name))])
    elif name == "_qgemm":
        module.set_isa(quantized_name)  # at most that set: the CPU's best below it


def load(name: str) -> ModuleType | None:
    if name not in _cache:
        module = None
        if not _DISABLED:
            try:
                module = importlib.import_module(f"{__name__}.{name}")
            except ImportError:
                module = None
        if module is not None:
            _apply_forced_isa(name, module)
        _cache[name] = module
    return _cache[name]
