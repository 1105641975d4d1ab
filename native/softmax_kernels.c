/* Softmax and log-softmax of one row: the SIMD loops behind _softmax.pyx.
 *
 * Design: out[j] = softmax(z)[j] (log: log_softmax) over the visible columns j < limit, with
 * z = scale * x + mask (mask may be NULL; -inf allowed); columns from limit on are 0 (log: -inf).
 * x and out have n columns; the caller clips limit to [0, n] (lengths and causal masking).
 * Three passes over the row, which stays in L1:
 *   1. z into out, and m = max z;  if m is -inf (nothing visible) the row is 0 (log: -inf), never NaN;
 *   2. s = sum exp(z - m) in double (AIO_LANES partial sums), the exps stored into out for softmax;
 *   3. softmax: out *= 1 / s;  log: out = (z - m) - log s, two terms of the same sign (s >= 1), so no
 *      cancellation.
 * z is rounded to the element type, as in any float32 implementation: near-ulp agreement with the
 * float64 reference for moderate logits. Rows are independent, so thread count never changes a bit. */
#include "softmax_kernels.h"
#include "vmath.h"

/* T: element type, SFX: name suffix, EXP: its vector exp, V/IV: T and same-width int vectors of 16 */
#define AIO_SOFTMAX_ROW(T, SFX, EXP, V, IV)                                                              \
    /* 16 columns of z = scale x + mask into out, and lanes = max(lanes, z), in GCC vectors: GCC leaves  \
     * a max over partial maxima scalar. */                                                              \
    AIO_INLINE void aio_logits16_##SFX(const T *x, const T *mask, T scale, T *out, V *lanes)             \
    {                                                                                                    \
        V z, add;                                                                                        \
        memcpy(&z, x, sizeof z);                                                                         \
        z *= scale;                                                                                      \
        if (mask) {                                                                                      \
            memcpy(&add, mask, sizeof add);                                                              \
            z += add;                                                                                    \
        }                                                                                                \
        memcpy(out, &z, sizeof z);                                                                       \
        IV greater = z > *lanes;                                                                         \
        *lanes = (V)(((IV)z & greater) | ((IV)*lanes & ~greater));                                       \
    }                                                                                                    \
                                                                                                         \
    /* z into out[0:n] and its max (-inf for n = 0); two chains of lanes to hide the latency */          \
    AIO_INLINE T aio_logits_##SFX(const T *x, const T *mask, T scale, T *out, long n)                    \
    {                                                                                                    \
        V lanes[2] = {(V){0} - INFINITY, (V){0} - INFINITY};                                             \
        T m = -INFINITY;                                                                                 \
        long j = 0;                                                                                      \
        for (; j + 32 <= n; j += 32)                                                                     \
            for (int c = 0; c < 2; c++)                                                                  \
                aio_logits16_##SFX(x + j + 16 * c, mask ? mask + j + 16 * c : 0, scale, out + j + 16 * c, \
                                   &lanes[c]);                                                           \
        for (int k = 0; k < 32; k++) m = lanes[k / 16][k % 16] > m ? lanes[k / 16][k % 16] : m;          \
        for (; j < n; j++) {                                                                             \
            out[j] = mask ? scale * x[j] + mask[j] : scale * x[j];                                       \
            m = out[j] > m ? out[j] : m;                                                                 \
        }                                                                                                \
        return m;                                                                                        \
    }                                                                                                    \
                                                                                                         \
    AIO_CLONES void aio_softmax_row_##SFX(const T *x, const T *mask, T *out, long n, long limit,         \
                                          double scale, int log_space)                                   \
    {                                                                                                    \
        const T m = aio_logits_##SFX(x, mask, (T)scale, out, limit);                                     \
        double lanes[AIO_LANES] = {0}, sum = 0.0;                                                        \
        long j, k, body;                                                                                 \
        if (!(m > -INFINITY)) limit = 0;                                                                 \
        body = limit - limit % AIO_LANES;                                                                \
        if (log_space)                                                                                   \
            for (j = 0; j < body; j += AIO_LANES)                                                        \
                for (k = 0; k < AIO_LANES; k++) lanes[k] += EXP(out[j + k] - m);                         \
        else                                                                                             \
            for (j = 0; j < body; j += AIO_LANES)                                                        \
                for (k = 0; k < AIO_LANES; k++) {                                                        \
                    out[j + k] = EXP(out[j + k] - m);                                                    \
                    lanes[k] += out[j + k];                                                              \
                }                                                                                        \
        for (j = body; j < limit; j++) {                                                                 \
            T e = EXP(out[j] - m);                                                                       \
            if (!log_space) out[j] = e;                                                                  \
            lanes[j - body] += e;                                                                        \
        }                                                                                                \
        for (k = 0; k < AIO_LANES; k++) sum += lanes[k];                                                 \
        if (log_space) {                                                                                 \
            const T log_sum = (T)log(sum);                                                               \
            for (j = 0; j < limit; j++) out[j] = (out[j] - m) - log_sum;                                 \
        } else {                                                                                         \
            const T inv = (T)(1.0 / sum);                                                                \
            for (j = 0; j < limit; j++) out[j] *= inv;                                                   \
        }                                                                                                \
        for (j = limit; j < n; j++) out[j] = log_space ? -INFINITY : 0;                                  \
    }

typedef float aio_f32x16 __attribute__((vector_size(64)));
typedef int32_t aio_i32x16 __attribute__((vector_size(64)));
typedef double aio_f64x16 __attribute__((vector_size(128)));
typedef int64_t aio_i64x16 __attribute__((vector_size(128)));

AIO_SOFTMAX_ROW(float, f32, aio_exp_f32, aio_f32x16, aio_i32x16)
AIO_SOFTMAX_ROW(double, f64, aio_exp_f64, aio_f64x16, aio_i64x16)
