/* Vectorizable math for the pointwise kernels: exp in float and double, and the runtime ISA dispatch.
 *
 * Design: libm's expf/exp are calls GCC cannot vectorize without -ffast-math (which we refuse: it
 * breaks -inf masks), so exp is written out in branch-free arithmetic that GCC turns into SIMD:
 *   exp(x) = 2^n * exp(r),  n = round(x / ln2),  r = x - n*ln2 in [-ln2/2, ln2/2]  (Cody-Waite:
 *   ln2 = LN2_HI + LN2_LO, LN2_HI short enough that n*LN2_HI is exact without FMA),
 *   exp(r) by its Taylor polynomial (degree 7 in float, 13 in double: truncation < 0.1 ulp),
 *   2^n built in the exponent bits, in two halves so that subnormal results round once.
 * Results are within ~1 ulp; exp(-inf) and underflows give exactly 0, overflows +inf, NaN stays NaN.
 * round() is the 1.5 * 2^mantissa_bits trick: adding it leaves n in the low mantissa bits. */
#ifndef AIO_VMATH_H
#define AIO_VMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* One copy per ISA, picked at load time by an ifunc resolver (GCC on glibc x86-64); plain code elsewhere.
 * x86-64-v3 is AVX2 + FMA in one clone: GCC splits "avx2,fma" into two clones, neither with both. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define AIO_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define AIO_CLONES
#endif
#define AIO_INLINE static inline __attribute__((always_inline))

/* Partial sums of the reductions: a fixed-width inner loop over them is what GCC vectorizes, as it may
 * not reorder one running sum without -ffast-math. The order of operations then depends on n only. */
#define AIO_LANES 16

#define AIO_ROUND_F32 0x1.8p23f
#define AIO_ROUND_F64 0x1.8p52

AIO_INLINE int32_t aio_bits_f32(float x) { int32_t i; memcpy(&i, &x, 4); return i; }
AIO_INLINE float aio_from_bits_f32(int32_t i) { float x; memcpy(&x, &i, 4); return x; }
AIO_INLINE int64_t aio_bits_f64(double x) { int64_t i; memcpy(&i, &x, 8); return i; }
AIO_INLINE double aio_from_bits_f64(int64_t i) { double x; memcpy(&x, &i, 8); return x; }

/* c ? a : b as a bit blend. Written as a ternary, GCC (with the default -ftrapping-math) moves the
 * arithmetic that follows into the two arms, then refuses to if-convert them: no SIMD below AVX-512. */
AIO_INLINE float aio_select_f32(int c, float a, float b)
{
    int32_t m = -(int32_t)(c != 0);
    return aio_from_bits_f32((aio_bits_f32(a) & m) | (aio_bits_f32(b) & ~m));
}
AIO_INLINE double aio_select_f64(int c, double a, double b)
{
    int64_t m = -(int64_t)(c != 0);
    return aio_from_bits_f64((aio_bits_f64(a) & m) | (aio_bits_f64(b) & ~m));
}

/* p * 2^n, n given as t = n + AIO_ROUND_F32 (n in [-150, 128]); each half of n is a normal power. */
AIO_INLINE float aio_scale_f32(float p, float t)
{
    int32_t n = aio_bits_f32(t) - aio_bits_f32(AIO_ROUND_F32);
    int32_t n1 = n >> 1;
    return p * aio_from_bits_f32((int32_t)((uint32_t)(n1 + 127) << 23))
             * aio_from_bits_f32((int32_t)((uint32_t)(n - n1 + 127) << 23));
}

/* exp(r), |r| <= ~0.35 */
AIO_INLINE float aio_exp_poly_f32(float r)
{
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    return p * r + 1.0f;
}

#define AIO_LOG2E_F32 1.44269504f
#define AIO_LN2_HI_F32 0.693145751953125f /* 15 significant bits: n * LN2_HI is exact for |n| < 512 */
#define AIO_LN2_LO_F32 1.42860682e-6f

/* exp(x) for x <= 89 or NaN, which cannot overflow: no clamp above. Softmax's z - max z <= 0 takes
 * it directly (one compare and blend less per element than aio_exp_f32, the same bits). */
AIO_INLINE float aio_exp_no_overflow_f32(float x)
{
    x = aio_select_f32(x < -104.0f, -104.0f, x); /* exp(-104) rounds to 0 */
    float t = x * AIO_LOG2E_F32 + AIO_ROUND_F32;
    float n = t - AIO_ROUND_F32;
    float r = x - n * AIO_LN2_HI_F32 - n * AIO_LN2_LO_F32;
    return aio_scale_f32(aio_exp_poly_f32(r), t);
}

AIO_INLINE float aio_exp_f32(float x)
{
    return aio_exp_no_overflow_f32(aio_select_f32(x > 89.0f, 89.0f, x)); /* exp(89) overflows to inf */
}

/* exp(hi + lo) for hi + lo in [-103.9, 0] (the caller's range: no clamps) and |lo| <= 1/8, without
 * rounding hi + lo: lo joins the reduced argument. */
AIO_INLINE float aio_exp2sum_f32(float hi, float lo)
{
    float t = (hi + lo) * AIO_LOG2E_F32 + AIO_ROUND_F32;
    float n = t - AIO_ROUND_F32;
    float r = (hi - n * AIO_LN2_HI_F32) - n * AIO_LN2_LO_F32 + lo;
    return aio_scale_f32(aio_exp_poly_f32(r), t);
}

/* Double: n in [-1076, 1024]. The halves come from the rounding trick, as AVX2 lacks a 64-bit >>. */
AIO_INLINE double aio_scale_f64(double p, double n)
{
    double t1 = n * 0.5 + AIO_ROUND_F64;
    double t2 = (n - (t1 - AIO_ROUND_F64)) + AIO_ROUND_F64;
    int64_t n1 = aio_bits_f64(t1) - aio_bits_f64(AIO_ROUND_F64);
    int64_t n2 = aio_bits_f64(t2) - aio_bits_f64(AIO_ROUND_F64);
    return p * aio_from_bits_f64((int64_t)((uint64_t)(n1 + 1023) << 52))
             * aio_from_bits_f64((int64_t)((uint64_t)(n2 + 1023) << 52));
}

AIO_INLINE double aio_exp_f64(double x)
{
    x = aio_select_f64(x < -746.0, -746.0, x); /* exp(-746) rounds to 0 */
    x = aio_select_f64(x > 710.0, 710.0, x);   /* exp(710) overflows to inf */
    double n = (x * 1.4426950408889634 + AIO_ROUND_F64) - AIO_ROUND_F64;
    double r = x - n * 0x1.62e42fee00000p-1 - n * 0x1.a39ef35793c76p-33; /* ln2 hi (32 zero bits) + lo */
    double p = 1.0 / 6227020800; /* 1/13! */
    p = p * r + 1.0 / 479001600;
    p = p * r + 1.0 / 39916800;
    p = p * r + 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return aio_scale_f64(p * r + 1.0, n);
}
#endif
