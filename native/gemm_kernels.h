/* Small-M float32 GEMM kernels (gemm_kernels.c), called by _gemm.pyx on the sub-block of one thread. */
#ifndef AIO_GEMM_KERNELS_H
#define AIO_GEMM_KERNELS_H

/* c[i, j] = alpha * sum_p a[i, p] * b[j, p] for i < m, j < n: a (m, k), b (n, k), c (m, n) row-major.
 * b_next (n_next rows, same k and ldb; NULL if none) is the b of the caller's next call: its first
 * rows are prefetched (a hint, never read) so that the next call finds them in cache. */
void aio_gemm_nt_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                     long m, long n, long k, float alpha, const float *b_next, long n_next);

/* c[i, j] = alpha * sum_p a[i, p] * b[p, j] for i < m, j < n: a (m, k), b (k, n), c (m, n) row-major. */
void aio_gemm_nn_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                     long m, long n, long k, float alpha);

/* The kernels' instruction set: the CPU's best unless aio_gemm_use_isa chose a lower one (tests run
 * every variant that way, between calls: it is not synchronised; -1 restores the CPU's).
 * aio_gemm_use_isa returns 0 if the CPU lacks the one asked for. */
enum { AIO_ISA_BASE = 0, AIO_ISA_AVX2 = 1, AIO_ISA_AVX512 = 2 };
int aio_gemm_isa(void);
int aio_gemm_use_isa(int isa);

#endif
