/* Register-blocked float32 GEMM for few rows or short products: the decoding and attention shapes
 * where BLAS packs more than it computes (contracts in gemm_kernels.h).
 *
 * Design
 * - The kernels (gemm_tiles.h) are written once with GCC vector extensions and compiled here three
 *   times: AVX-512 (16-float vectors, 32 registers), AVX2+FMA (8 floats, 16 registers) and baseline
 *   (4 floats: SSE2 on x86, NEON elsewhere); the entry points pick one from the CPU at run time.
 *   target_clones cannot do this: it compiles one body, so one vector width, and GCC lowers
 *   16-float vectors on AVX2 through the stack (measured 20-50x slower than native 8-float code).
 *   -ffp-contract=fast (gnu11) turns `acc += x * y` into FMA.
 * - NT with m >= OP_MIN_M rows and k > PACK_MAX_K (batched decoding, prefill): outer products.
 *   OP_NR rows of b are transposed into a k-major panel on the stack (OP_KC deep: 32 KiB with
 *   AVX-512, which stays in L1; the copy costs 1/m of the FMAs). Tiles of up to OP_MR a-rows x
 *   OP_NR columns run, per k-step, OP_NV vector loads of the panel and OP_MR broadcasts of a into
 *   OP_MR * OP_NV accumulators: no reductions, fewer loads per FMA than the dot-product tiles. Row
 *   tiles are as even as possible (32 rows: 6 tiles of 5 or 6). Full panels move their
 *   accumulators with whole-vector loads and stores (a partial copy through the stack in every
 *   k-block cost up to 30%). During the call the caller's next b (b_next) is prefetched into L2, a
 *   line or two per k-step, so that its packing reads cache, not memory. Against the dot-product
 *   tiles at 1 thread (C loop, interleaved runs, loaded machine): 1.5-1.8x at m = 32..64 for
 *   (k, n) in {512, 2048} and (512, 58101), 1.0-1.1x at m = 16, slower below; with AVX2 1.2-2x
 *   from m = 32. The baseline build packs none (SSE2 has no FMA and no broadcast loads: 0.7x).
 * - Packed weights (aio_gemm_pk_f32): a weight transposed once, at load, into the k-major panels
 *   the outer-product tiles read, so that no call packs. Every m runs the outer-product tiles on
 *   them, in every build. One row reads whole rows of the k-major panels (pk_row: AVX-512 two panels
 *   at once, AVX2 one): with the outer-product tile's 16-column strips, AVX2 read each panel in four
 *   passes of one line in four, and its M = 1 products ran 1.8x slower than AVX-512's from cache and from
 *   memory ((1, 512, 2048) 94 -> 52 us, (1, 512, 32000) 3.8 -> 2.3 ms, 1 thread, the AVX2 build on this
 *   Zen 4; AVX-512 51 and 2.1 ms).
 * - NT with fewer rows or short products (c = a b^T, both k-contiguous, as x @ W^T and Q @ K^T):
 *   a tile of mb a-rows x nb b-rows keeps mb * nb vector accumulators over k, so each b row is
 *   streamed once per mb a-rows and each load feeds several FMAs; one transpose-reduce turns VL
 *   accumulators into VL sums. One or two a-rows take NACC / 2 b-rows per tile (AVX-512: 8). With
 *   two or more a-rows, each k-step prefetches the same step of the next tile's b-rows (one tile
 *   ahead: nb parallel streams, which the hardware prefetchers lag behind). Against a prefetch 64
 *   floats ahead for one a-row only: OPUS-MT float32 beam 4 at batch 1 (4 a-rows, weights then
 *   unpacked), 1 thread, +36% end to end, greedy +6%; from cache, (4, 512, 2048) +30%. One a-row
 *   prefetches nothing: its prefetches cost as many instructions as its FMAs. The M = 1 rows of
 *   benchmarks/kernels.py, 1 thread, two runs each against numpy: 8 rows and no prefetch 0.95-1.08
 *   from cache and 1.03-1.09 from memory; 4 rows and the prefetch (as before) 0.92-1.08 and
 *   0.95-1.01; 8 rows with the prefetch into L2 instead of L1 0.83-0.99 and 1.70 (unpacked weights
 *   from memory are rare: models pack theirs, and attention's keys mostly come from cache). With
 *   AVX-512, one a-row against b-rows that all start off a cache line (numpy aligns to 16 bytes)
 *   loads whole lines with masked ends instead (nt_row_shifted): the same sums, bit for bit. Short products
 *   (k <= PACK_MAX_K) with at least PACK_MIN_M rows would spend as much on reductions as on FMAs:
 *   they transpose b in PACK_COLS-row panels onto the stack and run NN instead.
 * - NN (c = a b, b n-contiguous, as P @ V): a tile of up to 4 rows x NN_NV vectors accumulates
 *   a[i, p] * b[p, :] over p, each b row loaded once per 4 rows and prefetched NN_PREFETCH rows
 *   ahead (b is a KV cache, often out of L1).
 * - Every output element is computed by the same operations in the same order whatever tile, thread
 *   or column range it falls in (the path depends on m and k only): results do not depend on the
 *   partitioning. Tails in k or n are zero-padded vectors, never scalar code.
 * - float accumulators: the dot-product NT splits each k-sum into VL strided chains plus a fixed
 *   tree; the outer-product NT and NN sum each element in one chain of FMAs in k order (as BLAS).
 * - Weight-only int8 (gemm_wq_tiles.h): float32 a and sums, the weight stored as int8 with a float32
 *   scale per block of 32 along k, 4x fewer bytes to stream than float32 (what bounds decoding).
 *   Its panels of 64 columns are k-major, so each step loads a row of weights as vectors: w =
 *   float(q) * scale (sign-extending load, convert, multiply), then outer-product FMAs into the
 *   accumulators of a tile of rows. One tile of rows (up to WQ_MR; AVX-512: 8, with 7-8 rows in two
 *   half-width strips, 24 accumulators at most: (576 -> 1536) from memory, 1 thread, 7 rows 207 -> 182
 *   us, 8 rows 216 -> 197 against the float panel below) dequantizes in registers; more
 *   rows dequantize OP_KC x OP_NR pieces once into a float panel for gemm_tiles.h's outer-product
 *   tiles. Both make each element one FMA chain in k order over the same float weights: the same
 *   bits for a row alone or in any batch. One row, AVX-512, 1 thread, weights streamed from memory:
 *   8-10 GB/s of int8 weights (3-4x float32's time per product), the per-row W8A8 VNNI kernel 12-13:
 *   4 vector uops per 16 weights leave less room to hide memory latency; a prefetch WQ_PREFETCH
 *   steps (4 KiB) ahead gained 10-20% end to end on SmolLM2 over 1 KiB. Scaling each block's sum
 *   once instead of each weight (3 uops) measured no faster, and would make one row differ from a batch.
 */
#include <stdint.h>
#include <string.h>

#include "gemm_kernels.h"

enum { PACK_MIN_M = 8, PACK_MAX_K = 128, PACK_COLS = 64, NN_PREFETCH = 8 };
enum { OP_MIN_M = 16, OP_KC = 128, WQ_PREFETCH = 64 };

/* A span of memory to bring into L2 while other work runs, over a given number of steps: each
 * prefetch_step touches the two cache lines at `at` and moves on by `stride` <= 128 bytes (so no
 * line is skipped), stopping at the end; a span too long for its steps is prefetched in part. A
 * prefetch is a hint that never faults, so the line past the end may be touched too. */
struct prefetch {
    const char *at, *end;
    long stride;
};

static inline void prefetch_init(struct prefetch *f, const float *span, long floats, long steps,
                                 const void *idle) {
    long bytes = span != NULL && floats > 0 && steps > 0 ? floats * (long)sizeof(float) : 0;
    long stride = steps > 0 ? (bytes + steps - 1) / steps : 0;
    f->at = bytes ? (const char *)span : (const char *)idle; /* nothing to fetch: stay on `idle` */
    f->end = f->at + bytes;
    f->stride = stride < 128 ? stride : 128;
}

static inline __attribute__((always_inline)) void prefetch_step(struct prefetch *f) {
    __builtin_prefetch(f->at, 0, 2);
    __builtin_prefetch(f->at + 64, 0, 2);
    f->at = f->at + f->stride < f->end ? f->at + f->stride : f->at;
}

/* One row against packed weights prefetches the caller's next panels (aio_gemm_pk_f32's `next`) only
 * while its weights stream from memory: there the prefetch keeps more lines in flight than the
 * hardware prefetchers (1 thread, 48 weights in turn: 1-7% faster with it), but on weights in L2 or
 * L3 its instructions and fills cost the forward streams 5-10%. The first 1/PK_PROBE_SHARE of each
 * strip's steps run without it and time themselves with the time-stamp counter: from cache this Zen 4
 * reads ~36 bytes a tick (TSC at 2.6 GHz), from memory ~10; across x86 servers (TSC 2-3.5 GHz, one
 * core's cache at 50-150 GB/s and memory at 10-25 GB/s) STREAM_BYTES_PER_TICK lies between the two.
 * A call whose panels the thread's previous call prefetched (having found it streaming) skips the
 * probe, which would time that prefetched head as cache and stop prefetching every other call
 * (OPUS-MT's (512 -> 58101) output projection, 1 thread: 5% slower before it). A wrong guess costs
 * speed, never a different result. Without a cheap counter (cheap_clock), always prefetch. */
enum { PK_PROBE_SHARE = 8 };
#define STREAM_BYTES_PER_TICK 18.0
static _Thread_local const float *pk_prefetched; /* the `next` this thread's last one-row call prefetched */

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t clock_ticks(void) { return __rdtsc(); }
#else
static inline uint64_t clock_ticks(void) { return 0; }
#endif

/* Whether clock_ticks is cheap enough to probe with: a counter read takes ~25 ticks here, but a
 * hypervisor that traps it would make every probe cost microseconds. Measured once (a benign race:
 * every thread finds the same). */
static int clock_cheap = -1;
static int cheap_clock(void) {
    if (clock_cheap < 0) {
        uint64_t least = UINT64_MAX;
        for (int i = 0; i < 16; i++) {
            uint64_t t = clock_ticks(), u = clock_ticks() - t;
            least = u < least ? u : least;
        }
        clock_cheap = least > 0 && least < 200;
    }
    return clock_cheap;
}

static inline int streaming_from_memory(long bytes, uint64_t ticks) {
    return (double)bytes < STREAM_BYTES_PER_TICK * (double)ticks;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ISA(name) name##_avx512
#define ISA_TARGET __attribute__((target("avx512f,fma")))
#define VL 16
#define NACC 16
#define NT_MB 4
#define NT_NB 4
#define NN_NV 4
#define OP_MR 6
#define OP_NV 4
#define OP_PACK_NT
#define NT_SHIFTED
#define PK_NV 4
#define PK_PANELS 2
#define WQ_MR 8
#define WQ_MR_WIDE 6
#define WQ_NV 4
#define WQ_WIDEN(q) _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q)))
#include "gemm_tiles.h"
#undef ISA
#undef ISA_TARGET
#undef VL
#undef NACC
#undef NT_NB
#undef NN_NV
#undef OP_MR
#undef OP_NV
#undef OP_PACK_NT
#undef NT_SHIFTED
#undef PK_NV
#undef PK_PANELS
#undef WQ_MR
#undef WQ_MR_WIDE
#undef WQ_NV
#undef WQ_WIDEN

#define ISA(name) name##_avx2
#define ISA_TARGET __attribute__((target("avx2,fma")))
#define VL 8
#define NACC 8
#define NT_NB 2
#define NN_NV 2
#define OP_MR 6
#define OP_NV 2
#define OP_PACK_NT
#define PK_NV 8
#define PK_PANELS 1
#define WQ_MR 4
/* A single row takes 4 vectors (two passes over each panel, not four): (1, 512, 2048) 78 -> 57 us,
 * (1, 512, 32000) 1.35 -> 1.01 ms, 1 thread; more rows take 2, within the 16 registers. */
#define WQ_MR_WIDE 1
#define WQ_NV 4
#define WQ_WIDEN(q) _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q)))
#include "gemm_tiles.h"
#undef ISA
#undef ISA_TARGET
#undef VL
#undef NACC
#undef NT_NB
#undef NN_NV
#undef OP_MR
#undef OP_NV
#undef OP_PACK_NT
#undef PK_NV
#undef PK_PANELS
#undef WQ_MR
#undef WQ_MR_WIDE
#undef WQ_NV
#undef WQ_WIDEN
#endif

#define ISA(name) name##_base
#define ISA_TARGET
#define VL 4
#define NACC 8
#define NT_NB 2
#define NN_NV 2
#define OP_MR 6
#define OP_NV 2
#define PK_NV 8
#define PK_PANELS 1
#define WQ_MR 4
#define WQ_MR_WIDE 4
#define WQ_NV 2
#include "gemm_tiles.h"

static int cpu_instruction_set(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return AIO_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return AIO_ISA_AVX2;
#endif
    return AIO_ISA_BASE;
}

/* -1: the CPU's best; otherwise a lower one chosen by tests (aio_gemm_use_isa). */
static int chosen_isa = -1;

int aio_gemm_isa(void) { return chosen_isa >= 0 ? chosen_isa : cpu_instruction_set(); }

int aio_gemm_use_isa(int isa) {
    if (isa > cpu_instruction_set())
        return 0;
    chosen_isa = isa;
    return 1;
}

void aio_gemm_nt_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long m, long n,
                     long k, float alpha, const float *b_next, long n_next) {
    switch (aio_gemm_isa()) {
#if defined(__x86_64__) || defined(__i386__)
    case AIO_ISA_AVX512: gemm_nt_avx512(a, lda, b, ldb, c, ldc, m, n, k, alpha, b_next, n_next); return;
    case AIO_ISA_AVX2: gemm_nt_avx2(a, lda, b, ldb, c, ldc, m, n, k, alpha, b_next, n_next); return;
#endif
    default: gemm_nt_base(a, lda, b, ldb, c, ldc, m, n, k, alpha, b_next, n_next); return;
    }
}

void aio_gemm_nn_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long m, long n,
                     long k, float alpha) {
    switch (aio_gemm_isa()) {
#if defined(__x86_64__) || defined(__i386__)
    case AIO_ISA_AVX512: gemm_nn_avx512(a, lda, b, ldb, c, ldc, m, n, k, alpha); return;
    case AIO_ISA_AVX2: gemm_nn_avx2(a, lda, b, ldb, c, ldc, m, n, k, alpha); return;
#endif
    default: gemm_nn_base(a, lda, b, ldb, c, ldc, m, n, k, alpha); return;
    }
}

void aio_gemm_pk_f32(const float *a, long lda, const float *panel, float *c, long ldc, long m, long n, long k,
                     const float *next) {
    switch (aio_gemm_isa()) {
#if defined(__x86_64__) || defined(__i386__)
    case AIO_ISA_AVX512: gemm_pk_avx512(a, lda, panel, c, ldc, m, n, k, next); return;
    case AIO_ISA_AVX2: gemm_pk_avx2(a, lda, panel, c, ldc, m, n, k, next); return;
#endif
    default: gemm_pk_base(a, lda, panel, c, ldc, m, n, k, next); return;
    }
}

void aio_gemm_wq_f32(const float *a, long lda, const int8_t *panel, const float *scales, long lds, float *c,
                     long ldc, long m, long n, long k, const int8_t *next) {
    switch (aio_gemm_isa()) {
#if defined(__x86_64__) || defined(__i386__)
    case AIO_ISA_AVX512: gemm_wq_avx512(a, lda, panel, scales, lds, c, ldc, m, n, k, next); return;
    case AIO_ISA_AVX2: gemm_wq_avx2(a, lda, panel, scales, lds, c, ldc, m, n, k, next); return;
#endif
    default: gemm_wq_base(a, lda, panel, scales, lds, c, ldc, m, n, k, next); return;
    }
}
