/* Block-scaled int8 GEMM (GGUF Q8_0's arithmetic) for quantized linear layers (qblock_kernels.c),
 * called by _qgemm.pyx. Layouts and arithmetic are described in qblock_kernels.c's Design block. */
#ifndef AIO_QBLOCK_KERNELS_H
#define AIO_QBLOCK_KERNELS_H
#include <stdint.h>

/* Values per block along k: one weight scale and one activation scale each. k must be a multiple. */
enum { AIO_QB_BLOCK = 32 };

/* Weights: q (n, k) int8 row-major -> packed (aio_q_padded_rows(n) * k bytes) holding q + 128 as
 * unsigned bytes in the panel layout of aio_q8_pack (padding rows 128). */
void aio_qb_pack(const int8_t *q, long n, long k, uint8_t *packed);

/* Activations: each block of 32 values of the m rows of x (row stride ldx) quantized symmetrically,
 * s = rint(x * (127 / max|x|)) in [-127, 127] into xq (m rows of k); per row and block (m rows of
 * k / 32): xd = max|x| / 127 (0 for a zero block) and xc = 128 * sum(s), the VNNI compensation.
 * A block holding inf or NaN gets s = 0 and xd = inf or NaN: its products come out NaN. */
void aio_qb_quantize_rows(const float *x, long ldx, long m, long k, int8_t *xq, float *xd, int32_t *xc);

/* sums (m, n, k / 32) int32 = the exact block dot products sum_{p in block} s[i, p] q[j, p]: a test hook. */
void aio_qb_block_sums(const int8_t *xq, const int32_t *xc, long m, long k, const uint8_t *packed, long n,
                       int32_t *sums);

/* Columns [c0, c1) (c0 a multiple of AIO_Q_PANEL) of out (m, n), row stride ldo:
 * out[i, j] = act(sum_b float(block_sum) * (xd[i, b] * wd[b, j]) + bias[j]) + residual[i, j], the
 * blocks added in order with one fused multiply-add each. wd is (k / 32, ldw) float32 with ldw >=
 * the packed rows; bias and residual may be NULL; residual has row stride ldo and must not overlap out. */
void aio_qb_linear_cols(const int8_t *xq, const float *xd, const int32_t *xc, long m, long k, const uint8_t *packed,
                        const float *wd, long ldw, const float *bias, int act, const float *residual, float *out,
                        long ldo, long c0, long c1);

#endif
