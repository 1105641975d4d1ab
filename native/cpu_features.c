/* What the CPU and the build offer, asked once at import by _cpu.pyx.
 * __builtin_cpu_supports reads cpuid (and the OS's xsave state), so a feature reported here is usable. */
#ifdef _OPENMP
#include <omp.h>
#endif

int aio_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int aio_openmp_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int aio_cpu_supports(const char *feature) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* __builtin_cpu_supports needs a string literal, hence the table. */
#define AIO_FEATURE(name) if (__builtin_strcmp(feature, name) == 0) return __builtin_cpu_supports(name) != 0;
    AIO_FEATURE("sse4.2")
    AIO_FEATURE("avx")
    AIO_FEATURE("avx2")
    AIO_FEATURE("fma")
    AIO_FEATURE("avx512f")
    AIO_FEATURE("avx512bw")
    AIO_FEATURE("avx512vl")
    AIO_FEATURE("avx512vnni")
    AIO_FEATURE("avx512bf16")
    AIO_FEATURE("avxvnni")
#undef AIO_FEATURE
#endif
    (void)feature;
    return 0;
}
