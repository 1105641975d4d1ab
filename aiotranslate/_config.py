"""`show_config()`: what this installation runs with (build, CPU features, BLAS and threads)."""

from __future__ import annotations

import platform

from . import _native
from ._version import __version__


def config() -> dict:
    """The facts `show_config` prints, as a dict (for tests and bug reports)."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS the GEMM kernels call)
    from threadpoolctl import threadpool_info  # imported here: only this report needs it

    from .api.compute_type import get_supported_compute_types
    from .ops.quantized import isa

    cpu = _native.load("_cpu")
    return {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "native_kernels": cpu is not None,
        "openmp": cpu.openmp_enabled() if cpu else False,
        "openmp_max_threads": cpu.openmp_max_threads() if cpu else 1,
        "cpu_features": [k for k, v in cpu.cpu_features().items() if v] if cpu else [],
        "compute_types": sorted(get_supported_compute_types("cpu")),
        "quantized_kernels": isa(),
        "forced_isa": _native.forced_isa(),
        "blas": [
            {k: info.get(k) for k in ("internal_api", "prefix", "version", "num_threads", "filepath")}
            for info in threadpool_info()
            if info.get("user_api") == "blas"
        ],
    }


def show_config() -> None:
    """Print the version, OpenMP on/off and its threads, CPU features used, and the BLAS libraries."""
    c = config()
    print(f"aiotranslate {c['version']} (Python {c['python']}, {c['machine']})")
    if not c["native_kernels"]:
        print("native kernels: NOT BUILT (numpy reference fallback, slow)")
    else:
        omp = f"on, {c['openmp_max_threads']} threads max" if c["openmp"] else "off (serial kernels)"
        print(f"OpenMP: {omp}")
        print(f"CPU features: {', '.join(c['cpu_features']) or 'baseline only'}")
        if c["forced_isa"]:
            print(f"instruction sets capped at {c['forced_isa'].upper()} ({_native.FORCE_ISA_VARIABLE})")
        kernels = c["quantized_kernels"]
        print(f"compute types: {', '.join(c['compute_types'])} (int8 kernels: {kernels['int8']}, int8 "
              f"weight-only: {kernels['int8_weight_only']}, bfloat16 kernels: {kernels['bfloat16']})")
    if not c["blas"]:
        print("BLAS: none loaded")
    for b in c["blas"]:
        print(f"BLAS: {b['internal_api']} {b['version']} ({b['prefix']}), {b['num_threads']} threads")
