/* Activation quantization with a fixed multiplier: intgemm's Int8Shift::PrepareA, which Marian runs
 * for the "8bit alpha" models (Bergamot), where the multiplier a of each weight's input is stored in
 * the model (`<weight>_QuantMultA`) instead of measured per call.
 *
 *     s = clamp(rint(x * a), -127, 127)    (x * a rounded to float32 first, rint = nearest even)
 *
 * as intgemm's AVX-512 path computes it: cvtps_epi32, min 127, + 127, max 0. A product that is NaN or
 * out of int32's range converts to INT_MIN there (the "integer indefinite" value) and so lands on
 * -127; that is kept. Stored shifted by 128 (u = s + 128, padding 128) like aio_q8_quantize_rows, so
 * the int8 kernels of qgemm_kernels.c take it unchanged; the 127 shift of intgemm and its float bias
 * compensation are rebuilt in the epilogue's operands (ops/quantized.py, `IntgemmInput`). */
#ifndef AIO_QGEMM_STATIC_H
#define AIO_QGEMM_STATIC_H
#include <math.h>
#include <stdint.h>

#include "vmath.h"

AIO_CLONES static void aio_q8_quantize_rows_static(const float *x, long ldx, long m, long k, long kp,
                                                   float mult, uint8_t *xu) {
    for (long i = 0; i < m; i++) {
        const float *r = x + i * ldx;
        uint8_t *u = xu + i * kp;
        for (long p = 0; p < k; p++) {
            float v = r[p] * mult;
            /* fabsf(v) < 2^31 is false for NaN too: both take intgemm's INT_MIN -> -127 */
            float c = fabsf(v) < 2147483648.0f ? fminf(fmaxf(v, -127.0f), 127.0f) : -127.0f;
            u[p] = (uint8_t)((int32_t)rintf(c) + 128);
        }
        for (long p = k; p < kp; p++) u[p] = 128;
    }
}

#endif
