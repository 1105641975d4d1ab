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
/* The helpers returning v16 are always inlined into the clones, so no call ABI is involved. */
#pragma GCC diagnostic ignored "-Wpsabi"

static AIO_INLINE v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The levels of a transpose-reduce: blocks of 8, 4, 2, 1 lanes from x and y, each summed with its
 * neighbouring block, so every output lane still holds a partial sum of a single input. */
#define MERGE8(x, y)                                                                               \
    (__builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +        \
     __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
#define MERGE4(x, y)                                                                               \
    (__builtin_shufflevector(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +      \
     __builtin_shufflevector(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
#define MERGE2(x, y)                                                                               \
    (__builtin_shufflevector(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +      \
     __builtin_shufflevector(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
#define MERGE1(x, y)                                                                               \
    (__builtin_shufflevector(x, y, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +     \
     __builtin_shufflevector(x, y, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))

/* Horizontal sums of 16 vectors in 15 vector adds; the sum of acc[v] lands in lane BITREV4[v], and
 * every input goes through the same addition tree. */
static const unsigned char BITREV4[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};

static AIO_INLINE v16 reduce16(const v16 *acc) {
    v16 r[8], s[4];
    for (int i = 0; i < 8; i++) r[i] = MERGE8(acc[2 * i], acc[2 * i + 1]);
    for (int i = 0; i < 4; i++) s[i] = MERGE4(r[2 * i], r[2 * i + 1]);
    v16 t0 = MERGE2(s[0], s[1]), t1 = MERGE2(s[2], s[3]);
    return MERGE1(t0, t1);
}

/* c[i, j] for i < mb, j < nb (mb * nb <= 16); inlined with constant sizes into fully unrolled code. */
static AIO_INLINE void nt_tile(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                               long k, float alpha, int mb, int nb) {
    v16 acc[16] = {0};
    long k16 = k & ~15L;
    for (long p = 0; p < k16; p += 16) {
        v16 bv[16];
        for (int j = 0; j < nb; j++) bv[j] = load16(b + j * ldb + p);
        for (int i = 0; i < mb; i++) {
            v16 av = load16(a + i * lda + p);
            for (int j = 0; j < nb; j++) acc[i * nb + j] += av * bv[j];
        }
    }
    v16 sums = reduce16(acc);
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < nb; j++) {
            float s = sums[BITREV4[i * nb + j]];
            for (long p = k16; p < k; p++) s += a[i * lda + p] * b[j * ldb + p];
            c[i * ldc + j] = alpha * s;
        }
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

AIO_CLONES void aio_gemm_nt_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                long m, long n, long k, float alpha) {
    long j = 0;
    if (m == 1)
        j = nt_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 1, 8);
    else if (m == 2)
        j = nt_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 2, 8);
    j = nt_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 4, 4);
    nt_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 4, 1);
}

/* c[i, 16 v + l] for i < mb, v < nv, l < 16 (mb, nv <= 4). */
static AIO_INLINE void nn_tile(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                               long k, float alpha, int mb, int nv) {
    v16 acc[16] = {0};
    for (long p = 0; p < k; p++) {
        v16 bv[4];
        for (int v = 0; v < nv; v++) bv[v] = load16(b + p * ldb + 16 * v);
        for (int i = 0; i < mb; i++) {
            float ai = a[i * lda + p];
            for (int v = 0; v < nv; v++) acc[i * nv + v] += ai * bv[v];
        }
    }
    for (int i = 0; i < mb; i++)
        for (int v = 0; v < nv; v++) {
            v16 r = alpha * acc[i * nv + v];
            memcpy(c + i * ldc + 16 * v, &r, sizeof r);
        }
}

/* Columns [j, n) in blocks of 16 NV, rows in blocks of 4; returns the first column not done. */
static AIO_INLINE long nn_columns(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                  long m, long j, long n, long k, float alpha, int NV) {
    for (; j + 16 * NV <= n; j += 16 * NV) {
        long i = 0;
        for (; i + 4 <= m; i += 4) nn_tile(a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, k, alpha, 4, NV);
        const float *ai = a + i * lda;
        float *cij = c + i * ldc + j;
        switch (m - i) {
        case 0: break;
        case 1: nn_tile(ai, lda, b + j, ldb, cij, ldc, k, alpha, 1, NV); break;
        case 2: nn_tile(ai, lda, b + j, ldb, cij, ldc, k, alpha, 2, NV); break;
        default: nn_tile(ai, lda, b + j, ldb, cij, ldc, k, alpha, 3, NV); break;
        }
    }
    return j;
}

AIO_CLONES void aio_gemm_nn_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                long m, long n, long k, float alpha) {
    long j = nn_columns(a, lda, b, ldb, c, ldc, m, 0, n, k, alpha, 4);
    j = nn_columns(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 1);
    /* The last n % 16 columns: the same multiply-adds in the same order as one vector lane. */
    for (long i = 0; i < m; i++)
        for (long jj = j; jj < n; jj++) {
            float s = 0.0f;
            for (long p = 0; p < k; p++) s += a[i * lda + p] * b[p * ldb + jj];
            c[i * ldc + jj] = alpha * s;
        }
}
