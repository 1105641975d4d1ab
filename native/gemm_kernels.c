/* Register-blocked float32 GEMM for few rows: the decode-time shapes where BLAS packs more than it
 * computes (see gemm_kernels.h for the contracts).
 *
 * Design
 * - Plain GCC vector extensions of 16 floats, compiled three times by target_clones (AVX-512, AVX2+FMA,
 *   baseline) and picked at load time; -ffp-contract=fast (gnu11) turns `acc += x * y` into FMA.
 *   Tiles are sized for AVX-512's 32 registers; the AVX2 clone spills some accumulators.
 * - NT (c = a b^T, both operands k-contiguous): a tile of mb a-rows x nb b-rows keeps mb * nb <= 16
 *   vector accumulators over k, so each b row is streamed once per mb a-rows and each load feeds
 *   several FMAs. One or two a-rows get 8 b-rows per tile (measured faster than 4 or 16 from L2).
 *   One transpose-reduce
 *   turns the 16 accumulators into 16 sums; the k % 16 tail is added in scalar.
 * - NN (c = a b, b n-contiguous): a tile of mb rows x nv 16-column vectors accumulates
 *   a[i, p] * b[p, :] over p, b rows loaded once per mb rows; leftover columns run in scalar.
 * - Every output element is computed by the same operations in the same order whatever tile, thread
 *   or column range it falls in: results do not depend on the partitioning.
 * - float accumulators: the 16 lanes (NT) split the k-sum into 16 short chains plus a fixed tree.
 */
#include <string.h>

#include "gemm_kernels.h"

#define AIO_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#define AIO_INLINE inline __attribute__((always_inline))

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
/* NT products with at least PACK_MIN_M rows and at most PACK_MAX_K terms run as NN on a transposed
 * copy of b; NN prefetches b NN_PREFETCH rows ahead (from L2/L3 when b is a KV cache). */
enum { PACK_MIN_M = 8, PACK_MAX_K = 128, NN_PREFETCH = 8 };
/* The helpers returning v16 are always inlined into the clones, so no call ABI is involved. */
#pragma GCC diagnostic ignored "-Wpsabi"

static AIO_INLINE v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A load GCC cannot repeat: it keeps the value in a register for all the FMAs of a tile instead of
 * folding the load into each of them, which doubles the loads of the one- to three-row tiles. */
static AIO_INLINE v16 load16_once(const float *p) { return *(const volatile v16u *)p; }

/* The first r < 16 floats at p, zero-filled. */
static AIO_INLINE v16 load_part(const float *p, long r) {
    v16 v = {0};
    memcpy(&v, p, r * sizeof(float));
    return v;
}

/* Shuffles pairing the blocks of h lanes of x and y: LO takes the even blocks of both, HI the odd
 * ones, interleaved x, y, x, y, ... Each level of a transpose or transpose-reduce uses one h. */
#define LO8(x, y) __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
#define HI8(x, y) __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31)
#define LO4(x, y) __builtin_shufflevector(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27)
#define HI4(x, y) __builtin_shufflevector(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31)
#define LO2(x, y) __builtin_shufflevector(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29)
#define HI2(x, y) __builtin_shufflevector(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31)
#define LO1(x, y) __builtin_shufflevector(x, y, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30)
#define HI1(x, y) __builtin_shufflevector(x, y, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31)

/* Horizontal sums of 16 vectors in 15 vector adds (and 30 shuffles): the sum of acc[v] lands in lane
 * BITREV4[v], and every input goes through the same addition tree. */
static const unsigned char BITREV4[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};

static AIO_INLINE v16 reduce16(const v16 *acc) {
    v16 r[8], s[4];
    for (int i = 0; i < 8; i++) r[i] = LO8(acc[2 * i], acc[2 * i + 1]) + HI8(acc[2 * i], acc[2 * i + 1]);
    for (int i = 0; i < 4; i++) s[i] = LO4(r[2 * i], r[2 * i + 1]) + HI4(r[2 * i], r[2 * i + 1]);
    v16 t0 = LO2(s[0], s[1]) + HI2(s[0], s[1]), t1 = LO2(s[2], s[3]) + HI2(s[2], s[3]);
    return LO1(t0, t1) + HI1(t0, t1);
}

/* dst[p * ldd + j] = src[j * lds + p] for j, p < 16: four levels pairing rows i and i + h. */
#define TRANSPOSE_LEVEL(h, LO, HI)                                                                  \
    for (int g = 0; g < 16; g += 2 * h)                                                            \
        for (int i = g; i < g + h; i++) {                                                          \
            v16 x = r[i], y = r[i + h];                                                             \
            r[i] = LO(x, y);                                                                        \
            r[i + h] = HI(x, y);                                                                    \
        }

static AIO_INLINE void transpose16(const float *src, long lds, float *dst, long ldd) {
    v16 r[16];
    for (int i = 0; i < 16; i++) r[i] = load16(src + i * lds);
    TRANSPOSE_LEVEL(8, LO8, HI8)
    TRANSPOSE_LEVEL(4, LO4, HI4)
    TRANSPOSE_LEVEL(2, LO2, HI2)
    TRANSPOSE_LEVEL(1, LO1, HI1)
    for (int i = 0; i < 16; i++) memcpy(dst + i * ldd, &r[i], sizeof r[i]);
}

/* bt (k, 64) = the first w <= 64 rows of b (w, k) transposed. */
static AIO_INLINE void pack_transposed(const float *b, long ldb, long w, long k, float *bt) {
    long w16 = w & ~15L, k16 = k & ~15L;
    for (long j = 0; j < w16; j += 16)
        for (long p = 0; p < k16; p += 16) transpose16(b + j * ldb + p, ldb, bt + p * 64 + j, 64);
    for (long p = 0; p < k; p++)
        for (long j = p < k16 ? w16 : 0; j < w; j++) bt[p * 64 + j] = b[j * ldb + p];
}

/* c[i, j] for i < mb, j < nb (mb * nb <= 16); inlined with constant sizes into fully unrolled code. */
static AIO_INLINE void nt_tile(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                               long k, float alpha, int mb, int nb) {
    v16 acc[16] = {0};
    long p = 0;
    for (; p + 16 <= k; p += 16) {
        v16 bv[16];
        for (int j = 0; j < nb; j++) bv[j] = load16_once(b + j * ldb + p);
        for (int i = 0; i < mb; i++) {
            v16 av = load16(a + i * lda + p);
            for (int j = 0; j < nb; j++) acc[i * nb + j] += av * bv[j];
        }
    }
    if (p < k) { /* the k % 16 tail as one more step on zero-padded vectors */
        v16 bv[16];
        for (int j = 0; j < nb; j++) bv[j] = load_part(b + j * ldb + p, k - p);
        for (int i = 0; i < mb; i++) {
            v16 av = load_part(a + i * lda + p, k - p);
            for (int j = 0; j < nb; j++) acc[i * nb + j] += av * bv[j];
        }
    }
    /* Fed in bit-reversed order, the sums come out in natural order: row i at lanes [i nb, i nb + nb). */
    v16 in[16];
    for (int v = 0; v < 16; v++) in[v] = acc[BITREV4[v]];
    v16 sums = alpha * reduce16(in);
    float s[16];
    memcpy(s, &sums, sizeof sums);
    for (int i = 0; i < mb; i++) memcpy(c + i * ldc, s + i * nb, nb * sizeof(float));
}

/* Columns [j, n) in blocks of NB, all m rows in blocks of MB (rows left over when MB is 4 get a
 * narrower tile); returns the first column not done. */
static AIO_INLINE long nt_columns(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                  long m, long j, long n, long k, float alpha, int MB, int NB) {
    for (; j + NB <= n; j += NB) {
        long i = 0;
        for (; i + MB <= m; i += MB)
            nt_tile(a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc, k, alpha, MB, NB);
        if (MB != 4 || i == m) continue;
        const float *ai = a + i * lda, *bj = b + j * ldb;
        float *cij = c + i * ldc + j;
        switch (m - i) {
        case 1: nt_tile(ai, lda, bj, ldb, cij, ldc, k, alpha, 1, NB); break;
        case 2: nt_tile(ai, lda, bj, ldb, cij, ldc, k, alpha, 2, NB); break;
        default: nt_tile(ai, lda, bj, ldb, cij, ldc, k, alpha, 3, NB); break;
        }
    }
    return j;
}

/* c[i, 16 v + l] for i < mb, v < nv, l < 16 (mb, nv <= 4), but only l < r in the last vector. */
static AIO_INLINE void nn_tile(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                               long k, float alpha, int mb, int nv, int r) {
    v16 acc[16] = {0};
    for (long p = 0; p < k; p++) {
        v16 bv[4];
        for (int v = 0; v < nv; v++) {
            const float *bp = b + p * ldb + 16 * v;
            bv[v] = v == nv - 1 && r < 16 ? load_part(bp, r) : load16_once(bp);
            __builtin_prefetch(bp + NN_PREFETCH * ldb); /* never faults */
        }
        for (int i = 0; i < mb; i++) {
            float ai = a[i * lda + p];
            for (int v = 0; v < nv; v++) acc[i * nv + v] += ai * bv[v];
        }
    }
    for (int i = 0; i < mb; i++)
        for (int v = 0; v < nv; v++) {
            v16 out = alpha * acc[i * nv + v];
            memcpy(c + i * ldc + 16 * v, &out, (v == nv - 1 ? r : 16) * sizeof(float));
        }
}

/* All m rows, in blocks of 4, of one block of nv column vectors (r columns in the last). */
static AIO_INLINE void nn_rows(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                               long m, long k, float alpha, int nv, int r) {
    long i = 0;
    for (; i + 4 <= m; i += 4) nn_tile(a + i * lda, lda, b, ldb, c + i * ldc, ldc, k, alpha, 4, nv, r);
    const float *ai = a + i * lda;
    float *ci = c + i * ldc;
    switch (m - i) {
    case 0: break;
    case 1: nn_tile(ai, lda, b, ldb, ci, ldc, k, alpha, 1, nv, r); break;
    case 2: nn_tile(ai, lda, b, ldb, ci, ldc, k, alpha, 2, nv, r); break;
    default: nn_tile(ai, lda, b, ldb, ci, ldc, k, alpha, 3, nv, r); break;
    }
}

/* Columns in blocks of 64, then 16, then the n % 16 left as one zero-padded vector. */
static AIO_INLINE void nn_all_columns(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                      long m, long n, long k, float alpha) {
    long j = 0;
    for (; j + 64 <= n; j += 64) nn_rows(a, lda, b + j, ldb, c + j, ldc, m, k, alpha, 4, 16);
    for (; j + 16 <= n; j += 16) nn_rows(a, lda, b + j, ldb, c + j, ldc, m, k, alpha, 1, 16);
    if (j < n) nn_rows(a, lda, b + j, ldb, c + j, ldc, m, k, alpha, 1, (int)(n - j));
}

AIO_CLONES void aio_gemm_nn_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                long m, long n, long k, float alpha) {
    nn_all_columns(a, lda, b, ldb, c, ldc, m, n, k, alpha);
}

AIO_CLONES void aio_gemm_nt_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                long m, long n, long k, float alpha) {
    if (m >= PACK_MIN_M && k <= PACK_MAX_K) {
        /* Short dot products: the reduction would cost as much as the FMAs. Transpose 64 rows of b at
         * a time onto the stack and run the NN kernel on them instead. */
        float bt[PACK_MAX_K * 64];
        for (long j = 0; j < n; j += 64) {
            long w = n - j < 64 ? n - j : 64;
            pack_transposed(b + j * ldb, ldb, w, k, bt);
            nn_all_columns(a, lda, bt, 64, c + j, ldc, m, w, k, alpha);
        }
        return;
    }
    long j = 0;
    if (m == 1)
        j = nt_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 1, 8);
    else if (m == 2)
        j = nt_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 2, 8);
    j = nt_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 4, 4);
    nt_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 4, 1);
}

