/* Elementwise activations over a contiguous float/double array, in place; shared by the GEMM
 * epilogue (_gemm) and the activation kernels (_activations). Codes match native/common.pxd.
 * Formulas: gelu = 0.5 x (1 + erf(x / sqrt 2)); gelu_tanh = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
 * silu = x / (1 + exp(-x)). */
#ifndef AIO_ACTIVATION_H
#define AIO_ACTIVATION_H
#include <math.h>

enum { AIO_ACT_NONE = 0, AIO_ACT_RELU = 1, AIO_ACT_GELU = 2, AIO_ACT_GELU_TANH = 3, AIO_ACT_SILU = 4 };

static void aio_activate_f32(float *x, long n, int act) {
    long i;
    switch (act) {
    case AIO_ACT_RELU:
        for (i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case AIO_ACT_GELU:
        for (i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        break;
    case AIO_ACT_GELU_TANH:
        for (i = 0; i < n; i++)
            x[i] = 0.5f * x[i] * (1.0f + tanhf(0.79788456080286536f * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
        break;
    case AIO_ACT_SILU:
        for (i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    default:
        break;
    }
}

static void aio_activate_f64(double *x, long n, int act) {
    long i;
    switch (act) {
    case AIO_ACT_RELU:
        for (i = 0; i < n; i++) x[i] = x[i] > 0.0 ? x[i] : 0.0;
        break;
    case AIO_ACT_GELU:
        for (i = 0; i < n; i++) x[i] = 0.5 * x[i] * (1.0 + erf(x[i] * 0.70710678118654752));
        break;
    case AIO_ACT_GELU_TANH:
        for (i = 0; i < n; i++)
            x[i] = 0.5 * x[i] * (1.0 + tanh(0.79788456080286536 * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
        break;
    case AIO_ACT_SILU:
        for (i = 0; i < n; i++) x[i] = x[i] / (1.0 + exp(-x[i]));
        break;
    default:
        break;
    }
}
#endif
