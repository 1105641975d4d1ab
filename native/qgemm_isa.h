/* What the int8 kernel files (qgemm_kernels.c, qblock_kernels.c) share to compile their SIMD paths:
 * the per-function target attributes (never -march=native: each path is picked at run time by
 * aio_q_isa), the 4-byte broadcast read of the VNNI products and the weight prefetch distance. */
#ifndef AIO_QGEMM_ISA_H
#define AIO_QGEMM_ISA_H
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define AIO_X86 1
#include <immintrin.h>
#define AIO_T512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define AIO_T256 __attribute__((target("avx2,fma")))

/* Four bytes at p as one int32 (to broadcast them) without a strict-aliasing read. */
static inline __attribute__((always_inline)) int32_t load4(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
#endif

/* How far ahead of its loads an AVX-512 tile prefetches its weight panel (bytes; the panels are one
 * forward stream): qgemm_kernels.c's Design block has the measurement. */
enum { AIO_Q_STREAM_PREFETCH = 4096 };

/* AMX (amx-int8) where Linux can lend the tile state (aio_q_amx says whether it does). */
#if defined(AIO_X86) && defined(__linux__)
#define AIO_AMX 1
#define AIO_TAMX __attribute__((target("avx512f,avx512bw,avx512vnni,amx-tile,amx-int8")))
#endif

#endif
