/* layer_norm and rms_norm of one row, optionally fused with the residual add: the SIMD loops behind
 * _norms.pyx.
 *
 * Design: s = x, or s = residual += x (residual updated in place, rounded to the element type: the
 * residual stream of a pre-norm block, one pass instead of two).
 *   layer_norm: out = (s - mean) / sqrt(var + eps) * gamma + beta   (beta may be NULL)
 *   rms_norm:   out = s / sqrt(mean(s^2) + eps) * gamma
 * Statistics in double, two passes (mean, then the mean of squared deviations: no E[s^2] - mean^2
 * cancellation), each with AIO_LANES partial sums in a fixed order; the output is formed in double and
 * rounded once. A row of n <= a few thousand stays in L1 across the passes. out may alias x. */
#include "norms_kernels.h"
#include "vmath.h"

/* T: element type, SFX: name suffix */
#define AIO_NORM_ROWS(T, SFX)                                                                            \
    /* residual += x, then the row to normalise */                                                       \
    AIO_INLINE const T *aio_norm_input_##SFX(const T *x, T *residual, long n)                            \
    {                                                                                                    \
        if (!residual) return x;                                                                         \
        for (long j = 0; j < n; j++) residual[j] += x[j];                                                \
        return residual;                                                                                 \
    }                                                                                                    \
                                                                                                         \
    /* sum of (s - shift)^p, p = 1 or 2, in double */                                                    \
    AIO_INLINE double aio_moment_##SFX(const T *s, long n, double shift, int p)                          \
    {                                                                                                    \
        double lane[AIO_LANES] = {0}, sum = 0.0;                                                         \
        const long body = n - n % AIO_LANES;                                                             \
        long j, k;                                                                                       \
        for (j = 0; j < body; j += AIO_LANES)                                                            \
            for (k = 0; k < AIO_LANES; k++) {                                                            \
                double d = (double)s[j + k] - shift;                                                     \
                lane[k] += p == 1 ? d : d * d;                                                           \
            }                                                                                            \
        for (j = body; j < n; j++) {                                                                     \
            double d = (double)s[j] - shift;                                                             \
            lane[j - body] += p == 1 ? d : d * d;                                                        \
        }                                                                                                \
        for (k = 0; k < AIO_LANES; k++) sum += lane[k];                                                  \
        return sum;                                                                                      \
    }                                                                                                    \
                                                                                                         \
    AIO_CLONES void aio_layer_norm_row_##SFX(const T *x, T *residual, const T *gamma, const T *beta,     \
                                             T *out, long n, double eps)                                 \
    {                                                                                                    \
        const T *s = aio_norm_input_##SFX(x, residual, n);                                               \
        const double mean = aio_moment_##SFX(s, n, 0.0, 1) / n;                                          \
        const double rstd = 1.0 / sqrt(aio_moment_##SFX(s, n, mean, 2) / n + eps);                       \
        long j;                                                                                          \
        if (beta)                                                                                        \
            for (j = 0; j < n; j++) out[j] = (T)(((double)s[j] - mean) * rstd * gamma[j] + beta[j]);     \
        else                                                                                             \
            for (j = 0; j < n; j++) out[j] = (T)(((double)s[j] - mean) * rstd * gamma[j]);               \
    }                                                                                                    \
                                                                                                         \
    AIO_CLONES void aio_rms_norm_row_##SFX(const T *x, T *residual, const T *gamma, T *out, long n,      \
                                           double eps)                                                   \
    {                                                                                                    \
        const T *s = aio_norm_input_##SFX(x, residual, n);                                               \
        const double rstd = 1.0 / sqrt(aio_moment_##SFX(s, n, 0.0, 2) / n + eps);                        \
        for (long j = 0; j < n; j++) out[j] = (T)((double)s[j] * rstd * gamma[j]);                       \
    }

AIO_NORM_ROWS(float, f32)
AIO_NORM_ROWS(double, f64)
