/* int8 and bfloat16 GEMM kernels for quantized linear layers (qgemm_kernels.c), called by _qgemm.pyx.
 * Layouts and arithmetic are described in qgemm_kernels.c's Design block. */
#ifndef AIO_QGEMM_KERNELS_H
#define AIO_QGEMM_KERNELS_H
#include <stdint.h>

/* Columns of one packed panel; a packed weight has panels(n) * PANEL rows, zero-padded. */
enum { AIO_Q_PANEL = 64 };

/* Instruction sets of the int8 and bf16 kernels, best first; AIO_ISA_AUTO picks the best the CPU has. */
enum { AIO_ISA_AUTO = -1, AIO_ISA_AVX512 = 0, AIO_ISA_AVX2 = 1, AIO_ISA_PORTABLE = 2 };

long aio_q_padded_rows(long n);   /* n rounded up to a whole panel */
long aio_q8_padded_k(long k);     /* k rounded up to a multiple of 4 (int8 groups) */
long aio_bf16_padded_k(long k);   /* k rounded up to a multiple of 2 (bf16 pairs) */

/* The instruction set the kernels use now, and a way to force one (tests): returns the one in
 * effect, which is `isa` when the CPU has it, else the best it has. */
int aio_q_isa(void);
int aio_q_set_isa(int isa);
int aio_q_bf16_isa(void);
/* Whether the int8 kernels use AMX tiles (only with the AVX-512 set, where the CPU and OS allow),
 * and a way to turn them off or back on (tests): returns the state in effect. */
int aio_q_amx(void);
int aio_q_set_amx(int on);

/* int8 weights: q (n, k) row-major -> packed (padded_rows(n) * padded_k(k) bytes) and comp
 * (padded_rows(n) int32) = 128 * the sum of each row. */
void aio_q8_pack(const int8_t *q, long n, long k, int8_t *packed, int32_t *comp);
/* Rows `rows[0..count)` of a packed weight (n_src rows) as a packed weight of `count` rows. */
void aio_q8_select(const int8_t *packed, long k, const int64_t *rows, long count, int8_t *out);

/* Activations: each of the m rows of x (row stride ldx, k values) quantized symmetrically,
 * s = rint(x * 127 / max|x|) in [-127, 127], stored shifted as u = s + 128 in xu (m rows of
 * padded_k(k) bytes, padding 128); scales[i] = max|x_i| / 127 (0 for a zero row). */
void aio_q8_quantize_rows(const float *x, long ldx, long m, long k, uint8_t *xu, float *scales);

/* acc (m, n) int32 = s @ q^T exactly, from quantize_rows' xu and a packed weight: a test hook. */
void aio_q8_matmul_s32(const uint8_t *xu, long m, long k, const int8_t *packed, const int32_t *comp,
                       long n, int32_t *acc);

/* Columns [c0, c1) (c0 a multiple of PANEL) of out (m, n) row stride ldo:
 * out = act(acc * xs[i] * ws[j] + bias[j]) + residual[i, j]; bias, residual may be NULL and
 * residual has row stride ldo and must not overlap out. */
void aio_q8_linear_cols(const uint8_t *xu, const float *xs, long m, long k, const int8_t *packed,
                        const int32_t *comp, const float *ws, const float *bias, int act,
                        const float *residual, float *out, long ldo, long c0, long c1);

/* The epilogue's tail on rows [0, mr) x w columns of out (row stride ldo): the activation, then
 * + residual (same stride). */
void aio_q_finish_rows(float *out, long ldo, const float *residual, long mr, long w, int act);

/* bfloat16: w (n, k) float32 -> packed (padded_rows(n) * padded_k(k) bf16, round to nearest even). */
void aio_bf16_pack(const float *w, long n, long k, uint16_t *packed);
void aio_bf16_select(const uint16_t *packed, long k, const int64_t *rows, long count, uint16_t *out);
/* x (m rows, stride ldx, k values) -> xb (m rows of padded_k(k) bf16, padding 0). */
void aio_bf16_convert_rows(const float *x, long ldx, long m, long k, uint16_t *xb);
void aio_bf16_linear_cols(const uint16_t *xb, long m, long k, const uint16_t *packed, const float *bias,
                          int act, const float *residual, float *out, long ldo, long c0, long c1);

#endif
