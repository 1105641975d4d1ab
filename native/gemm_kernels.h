/* Small-M float32 GEMM kernels (gemm_kernels.c), called by _gemm.pyx on the sub-block of one thread. */
#ifndef AIO_GEMM_KERNELS_H
#define AIO_GEMM_KERNELS_H

/* c[i, j] = alpha * sum_p a[i, p] * b[j, p] for i < m, j < n: a (m, k), b (n, k), c (m, n) row-major. */
void aio_gemm_nt_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                     long m, long n, long k, float alpha);

/* c[i, j] = alpha * sum_p a[i, p] * b[p, j] for i < m, j < n: a (m, k), b (k, n), c (m, n) row-major. */
void aio_gemm_nn_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                     long m, long n, long k, float alpha);

#endif
