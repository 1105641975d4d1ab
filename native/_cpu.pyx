# What this build and CPU offer: OpenMP on/off and its thread count, the x86 features the kernels use.

cdef extern from *:
    int aio_openmp_enabled() nogil
    int aio_openmp_max_threads() nogil
    int aio_cpu_supports(const char *feature) nogil

FEATURES = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
            "avx512vnni", "avx512bf16", "avxvnni")


def openmp_enabled():
    """True when the kernels were built with OpenMP (otherwise every prange runs serially)."""
    return bool(aio_openmp_enabled())


def openmp_max_threads():
    """OpenMP's default team size (OMP_NUM_THREADS or the core count); 1 without OpenMP."""
    return aio_openmp_max_threads()


def cpu_features():
    """{feature: bool} for the x86 features the kernels can dispatch on (all False elsewhere)."""
    return {name: bool(aio_cpu_supports(name.encode())) for name in FEATURES}
