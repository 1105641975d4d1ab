/* The scan behind argmax and top-k: skip, a block at a time, the elements that cannot enter the
 * result. The block test counts hits (an integer sum of comparison masks), which GCC vectorizes
 * without reassociating float math; only the block holding a hit is rescanned element by element.
 * On x86-64 Linux, GCC also builds an AVX2 clone picked at load time (the build targets plain x86-64). */
#include "select_scan.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define AIO_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define AIO_CLONES
#endif

/* 64 elements: long enough to amortize the test, short enough that the rescan after a hit is cheap. */
#define AIO_SCAN_BLOCK 64

#define AIO_FIRST_ABOVE(name, T)                                   \
    AIO_CLONES ptrdiff_t name(const T *x, ptrdiff_t n, T t) {      \
        ptrdiff_t b = 0;                                           \
        for (; b + AIO_SCAN_BLOCK <= n; b += AIO_SCAN_BLOCK) {     \
            int hits = 0;                                          \
            for (int l = 0; l < AIO_SCAN_BLOCK; l++)               \
                hits += x[b + l] > t;                              \
            if (hits) break;                                       \
        }                                                          \
        for (; b < n; b++)                                         \
            if (x[b] > t) return b;                                \
        return n;                                                  \
    }

AIO_FIRST_ABOVE(aio_first_above_f32, float)
AIO_FIRST_ABOVE(aio_first_above_f64, double)
