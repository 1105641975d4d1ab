/* Bias + activation and swiglu of one row: the loops behind _activations.pyx.
 *
 * Design: out = act(x + bias) (bias may be NULL; out may be x itself), in blocks of AIO_BLOCK columns:
 * the bias add writes a block of out, then activation.h's aio_activate_* (the GEMM epilogue's code)
 * rewrites it in place while it is still in L1.
 * swiglu: out[j] = silu(x[j]) * x[f + j] for x of 2f columns (gate half, then up half).
 * Formulas and accuracy are activation.h's. */
#include "activations_kernels.h"
#include "activation.h"

#define AIO_BLOCK 1024

/* T: element type, SFX: name suffix, EXP: its vector exp */
#define AIO_ACTIVATION_ROWS(T, SFX, EXP)                                                                 \
    AIO_CLONES void aio_bias_activation_row_##SFX(const T *x, const T *bias, int act, T *out, long n)    \
    {                                                                                                    \
        for (long start = 0; start < n; start += AIO_BLOCK) {                                            \
            const long m = n - start < AIO_BLOCK ? n - start : AIO_BLOCK;                                \
            T *o = out + start;                                                                          \
            if (bias)                                                                                    \
                for (long j = 0; j < m; j++) o[j] = x[start + j] + bias[start + j];                      \
            else if (o != x + start)                                                                     \
                memcpy(o, x + start, m * sizeof(T));                                                     \
            aio_activate_##SFX(o, m, act);                                                               \
        }                                                                                                \
    }                                                                                                    \
                                                                                                         \
    AIO_CLONES void aio_swiglu_row_##SFX(const T *x, T *out, long f)                                     \
    {                                                                                                    \
        for (long j = 0; j < f; j++) out[j] = x[j] / (1 + EXP(-x[j])) * x[f + j];                        \
    }

AIO_ACTIVATION_ROWS(float, f32, aio_exp_f32)
AIO_ACTIVATION_ROWS(double, f64, aio_exp_f64)
