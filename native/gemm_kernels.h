/* Small-M float32 GEMM kernels (gemm_kernels.c), called by _gemm.pyx on the sub-block of one thread. */
#ifndef AIO_GEMM_KERNELS_H
#define AIO_GEMM_KERNELS_H
#include <stdint.h>

/* c[i, j] = alpha * sum_p a[i, p] * b[j, p] for i < m, j < n: a (m, k), b (n, k), c (m, n) row-major.
 * b_next (n_next rows, same k and ldb; NULL if none) is the b of the caller's next call: its first
 * rows are prefetched (a hint, never read) so that the next call finds them in cache. */
void aio_gemm_nt_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                     long m, long n, long k, float alpha, const float *b_next, long n_next);

/* c[i, j] = alpha * sum_p a[i, p] * b[p, j] for i < m, j < n: a (m, k), b (k, n), c (m, n) row-major. */
void aio_gemm_nn_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                     long m, long n, long k, float alpha);

/* Columns per panel of the packed weights below: a weight (n, k) is stored as ceil(n / AIO_PANEL)
 * panels of AIO_PANEL columns, k-major (w[j, p] at panel[p * AIO_PANEL + j]), the last zero-padded. */
enum { AIO_PANEL = 64 };

/* Packed float32: c[i, j] = sum_p a[i, p] * w[j, p] for i < m, j < n <= AIO_PANEL, for one panel of
 * w; one row (m = 1) may take n <= 2 * AIO_PANEL over two consecutive panels. next: the panel(s) of
 * the caller's next call, prefetched (a hint; NULL if none; one row prefetches them only while its
 * weights stream from memory). */
void aio_gemm_pk_f32(const float *a, long lda, const float *panel, float *c, long ldc, long m, long n, long k,
                     const float *next);

/* Weight-only int8 (w stored as int8 q with one float32 scale per block of AIO_WQ_BLOCK values along k):
 * c[i, j] = sum_p a[i, p] * (float(q[j, p]) * scales[p / AIO_WQ_BLOCK, j]) for i < m, j < n <= AIO_PANEL,
 * for one panel of a weight packed as AIO_PANEL columns k-major (q[j, p] at panel[p * AIO_PANEL + j])
 * whose scales are rows of stride lds; the panel and its scales are zero-padded to AIO_PANEL
 * columns. k is a multiple of AIO_WQ_BLOCK. next: as for aio_gemm_pk_f32. */
enum { AIO_WQ_BLOCK = 32 };
void aio_gemm_wq_f32(const float *a, long lda, const int8_t *panel, const float *scales, long lds, float *c,
                     long ldc, long m, long n, long k, const int8_t *next);

/* The kernels' instruction set: the CPU's best unless aio_gemm_use_isa chose a lower one (tests run
 * every variant that way, between calls: it is not synchronised; -1 restores the CPU's).
 * aio_gemm_use_isa returns 0 if the CPU lacks the one asked for. */
enum { AIO_ISA_BASE = 0, AIO_ISA_AVX2 = 1, AIO_ISA_AVX512 = 2 };
int aio_gemm_isa(void);
int aio_gemm_use_isa(int isa);

#endif
