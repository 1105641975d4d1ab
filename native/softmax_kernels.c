/* Softmax and log-softmax of one row: the SIMD loops behind _softmax.pyx.
 *
 * Design: out[j] = softmax(z)[j] (log: log_softmax) over the visible columns j < limit, with
 * z = scale * x + mask (mask may be NULL; -inf allowed); columns from limit on are 0 (log: -inf).
 * x and out have n columns; the caller clips limit to [0, n] (lengths and causal masking).
 * NaN in, NaN out: a NaN or +inf among the visible z makes every visible output NaN: z - m is then NaN
 * somewhere (a +NaN is the max, a -NaN sorts below -inf, +inf - +inf is NaN), which the sum carries to
 * every column; a row whose max is -inf is scanned for a NaN before it counts as empty.
 * Three passes over the row, which stays in L1:
 *   1. z into out, and m = max z;  if m is -inf (nothing visible) the row is 0 (log: -inf), never NaN;
 *   2. s = sum exp(z - m) (the exps stored into out for softmax): AIO_LANES partial sums in T over
 *      blocks of AIO_SUM_BLOCK columns (8 terms of at most 1 a lane: relative error <= 7 T ulps, each
 *      block's sums then added in double). A double sum of every term converted and added two
 *      vectors a step: softmax (64, 3072) 15% slower (C loop, this Zen 4);
 *   3. softmax: out *= 1 / s;  log: out = (z - m) - log s, two terms of the same sign (s >= 1), so no
 *      cancellation.
 * z is rounded to the element type, as in any float32 implementation: near-ulp agreement with the
 * float64 reference for moderate logits. Rows are independent, so thread count never changes a bit.
 *
 * logsumexp of a row, log(sum_j exp(x[j])) in double: two read-only passes (max, then the sum of
 * exp(x - max)); -inf for an empty or all -inf row, NaN if the row holds a NaN, else +inf if a +inf.
 * Greedy search scores its best token as x[best] - logsumexp(x) instead of a full log_softmax. */
#include "softmax_kernels.h"
#include "vmath.h"

enum { AIO_SUM_BLOCK = 8 * AIO_LANES };

/* An order-preserving integer image of a float (an involution on the bits): GCC vectorizes an integer
 * max reduction, but not a float one without -ffast-math. A +NaN maps above +inf, a -NaN below -inf. */
AIO_INLINE int32_t aio_order_f32(int32_t bits) { return bits ^ ((bits >> 31) & INT32_MAX); }
AIO_INLINE int64_t aio_order_f64(int64_t bits) { return bits ^ ((bits >> 63) & INT64_MAX); }

/* Whether x[0:n] holds a NaN: a scan for the rare rows whose max cannot tell (all -inf or +inf). */
#define AIO_ANY_NAN(T, SFX)                                                                                 \
    AIO_INLINE int aio_any_nan_##SFX(const T *x, long n)                                                    \
    {                                                                                                       \
        int any = 0;                                                                                        \
        for (long j = 0; j < n; j++) any |= x[j] != x[j];                                                   \
        return any;                                                                                         \
    }
AIO_ANY_NAN(float, f32)
AIO_ANY_NAN(double, f64)

/* T: element type, SFX: name suffix, EXP: its vector exp, IT: the integer type of T's width */
#define AIO_SOFTMAX_ROW(T, SFX, EXP, IT)                                                                    \
    /* z = scale x + mask into out[0:n], and max z (-inf for n = 0) */                                      \
    AIO_INLINE T aio_logits_##SFX(const T *x, const T *mask, T scale, T *out, long n)                       \
    {                                                                                                       \
        IT m = aio_order_##SFX(aio_bits_##SFX(-INFINITY));                                                 \
        long j;                                                                                             \
        if (mask)                                                                                           \
            for (j = 0; j < n; j++) {                                                                       \
                out[j] = scale * x[j] + mask[j];                                                            \
                IT key = aio_order_##SFX(aio_bits_##SFX(out[j]));                                           \
                m = key > m ? key : m;                                                                      \
            }                                                                                               \
        else                                                                                                \
            for (j = 0; j < n; j++) {                                                                       \
                out[j] = scale * x[j];                                                                      \
                IT key = aio_order_##SFX(aio_bits_##SFX(out[j]));                                           \
                m = key > m ? key : m;                                                                      \
            }                                                                                               \
        return aio_from_bits_##SFX(aio_order_##SFX(m));                                                     \
    }                                                                                                       \
                                                                                                            \
    AIO_CLONES void aio_softmax_row_##SFX(const T *x, const T *mask, T *out, long n, long limit,         \
                                          double scale, int log_space)                                   \
    {                                                                                                    \
        const T m = aio_logits_##SFX(x, mask, (T)scale, out, limit);                                     \
        double lanes[AIO_LANES] = {0}, sum = 0.0;                                                        \
        long j, k, body;                                                                                 \
        if (m == -INFINITY && !aio_any_nan_##SFX(out, limit)) limit = 0; /* nothing visible */           \
        body = limit - limit % AIO_LANES;                                                                \
        for (long b = 0; b < body; b += AIO_SUM_BLOCK) {                                                 \
            long end = b + AIO_SUM_BLOCK < body ? b + AIO_SUM_BLOCK : body;                              \
            T part[AIO_LANES] = {0}; /* <= AIO_SUM_BLOCK / AIO_LANES terms of at most 1 a lane */        \
            if (log_space)                                                                               \
                for (j = b; j < end; j += AIO_LANES)                                                     \
                    for (k = 0; k < AIO_LANES; k++) part[k] += EXP(out[j + k] - m);                      \
            else                                                                                         \
                for (j = b; j < end; j += AIO_LANES)                                                     \
                    for (k = 0; k < AIO_LANES; k++) {                                                    \
                        out[j + k] = EXP(out[j + k] - m);                                                \
                        part[k] += out[j + k];                                                           \
                    }                                                                                    \
            for (k = 0; k < AIO_LANES; k++) lanes[k] += part[k];                                         \
        }                                                                                                \
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
    }                                                                                                    \
                                                                                                         \
    AIO_CLONES double aio_logsumexp_row_##SFX(const T *x, long n)                                        \
    {                                                                                                    \
        IT key = aio_order_##SFX(aio_bits_##SFX(-INFINITY));                                            \
        double lanes[AIO_LANES] = {0}, sum = 0.0;                                                        \
        long j, k, body = n - n % AIO_LANES;                                                             \
        for (j = 0; j < n; j++) {                                                                        \
            IT kj = aio_order_##SFX(aio_bits_##SFX(x[j]));                                              \
            key = kj > key ? kj : key;                                                                   \
        }                                                                                                \
        const T m = aio_from_bits_##SFX(aio_order_##SFX(key));                                          \
        if (!(m > -INFINITY && m < INFINITY)) /* empty or all -inf, a +NaN (the top of the order), +inf */ \
            return aio_any_nan_##SFX(x, n) ? NAN : m;                                                    \
        for (j = 0; j < body; j += AIO_LANES)                                                            \
            for (k = 0; k < AIO_LANES; k++) lanes[k] += EXP(x[j + k] - m);                               \
        for (j = body; j < n; j++) lanes[j - body] += EXP(x[j] - m);                                     \
        for (k = 0; k < AIO_LANES; k++) sum += lanes[k];                                                 \
        return (double)m + log(sum);                                                                     \
    }

AIO_SOFTMAX_ROW(float, f32, aio_exp_no_overflow_f32, int32_t) /* every exp argument is z - max z <= 0 */
AIO_SOFTMAX_ROW(double, f64, aio_exp_f64, int64_t)
