/* Elementwise activations over a contiguous float/double array, in place; shared by the GEMM
 * epilogue (_gemm) and the activation kernels (_activations). Codes match native/common.pxd.
 *
 * Design: one SIMD loop per activation, each copy compiled for avx512f / avx2+fma / baseline (vmath.h).
 *   relu:      max(x, 0)
 *   gelu:      x * Phi(x), Phi the normal CDF = 0.5 (1 + erf(x / sqrt 2)). Float: Phi(x) = 1 - Q(x) for
 *              x >= 0 and Q(-x) below, Q(a) = exp(-a^2/2) R(a) the upper tail, R a (4,5) rational
 *              fitted to Q(a) exp(a^2/2) on [0, 16] (relative error 9e-9), a^2 split exactly so the exp
 *              keeps full precision: a few ulp even deep in the negative tail, where 1 + erf cancels.
 *              Double: libm erfc (scalar; no vector erf is accurate enough for double).
 *   gelu_tanh: 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): one exp,
 *              and no cancellation for negative x.
 *   silu:      x / (1 + exp(-x)).
 * Finite inputs never give NaN; far negative ones give -0 where the exact result is below ~1e-37. */
#ifndef AIO_ACTIVATION_H
#define AIO_ACTIVATION_H
#include "vmath.h"

enum { AIO_ACT_NONE = 0, AIO_ACT_RELU = 1, AIO_ACT_GELU = 2, AIO_ACT_GELU_TANH = 3, AIO_ACT_SILU = 4 };

AIO_INLINE float aio_gelu_f32(float x)
{
    float a = fabsf(x);
    a = aio_select_f32(a > 14.4f, 14.4f, a); /* Q(14.4) rounds to 0: beyond, gelu is x or -0 */
    /* a = ah + al with ah on 12 bits, so ah^2 is exact and -a^2/2 = hi + lo without rounding error */
    float ah = aio_from_bits_f32(aio_bits_f32(a) & (int32_t)0xfffff000);
    float al = a - ah;
    float hi = -0.5f * ah * ah;
    float lo = -0.5f * al * (a + ah);
    float p = 0x1.1af920p-8f;
    p = p * a + 0x1.57be78p-5f;
    p = p * a + 0x1.7f3a6ep-3f;
    p = p * a + 0x1.c61a22p-2f;
    p = p * a + 0.5f;
    float q = 0x1.62a6c2p-7f;
    q = q * a + 0x1.aed6fcp-4f;
    q = q * a + 0x1.eb42e6p-2f;
    q = q * a + 0x1.37f0cep+0f;
    q = q * a + 0x1.af4f44p+0f;
    q = q * a + 1.0f;
    float tail = aio_exp2sum_f32(hi, lo) * (p / q);
    return x * aio_select_f32(x < 0.0f, tail, 1.0f - tail);
}

AIO_INLINE float aio_gelu_tanh_f32(float x)
{
    /* -2u = x (-2 sqrt(2/pi) - 2 * 0.044715 sqrt(2/pi) x^2) */
    return x / (1.0f + aio_exp_f32(x * (-1.59576912f - 0.0713548163f * x * x)));
}

AIO_INLINE double aio_gelu_tanh_f64(double x)
{
    return x / (1.0 + aio_exp_f64(x * (-1.5957691216057308 - 0.07135481627260025 * x * x)));
}

AIO_CLONES static void aio_activate_f32(float *x, long n, int act)
{
    long i;
    switch (act) {
    case AIO_ACT_RELU:
        for (i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case AIO_ACT_GELU:
        for (i = 0; i < n; i++) x[i] = aio_gelu_f32(x[i]);
        break;
    case AIO_ACT_GELU_TANH:
        for (i = 0; i < n; i++) x[i] = aio_gelu_tanh_f32(x[i]);
        break;
    case AIO_ACT_SILU:
        for (i = 0; i < n; i++) x[i] = x[i] / (1.0f + aio_exp_f32(-x[i]));
        break;
    default:
        break;
    }
}

AIO_CLONES static void aio_activate_f64(double *x, long n, int act)
{
    long i;
    switch (act) {
    case AIO_ACT_RELU:
        for (i = 0; i < n; i++) x[i] = x[i] > 0.0 ? x[i] : 0.0;
        break;
    case AIO_ACT_GELU:
        for (i = 0; i < n; i++) x[i] = 0.5 * x[i] * erfc(-0.70710678118654752 * x[i]);
        break;
    case AIO_ACT_GELU_TANH:
        for (i = 0; i < n; i++) x[i] = aio_gelu_tanh_f64(x[i]);
        break;
    case AIO_ACT_SILU:
        for (i = 0; i < n; i++) x[i] = x[i] / (1.0 + aio_exp_f64(-x[i]));
        break;
    default:
        break;
    }
}
#endif
