/* Row kernels of _activations.pyx; the contract is in activations_kernels.c. */
#ifndef AIO_ACTIVATIONS_KERNELS_H
#define AIO_ACTIVATIONS_KERNELS_H
void aio_bias_activation_row_f32(const float *x, const float *bias, int act, float *out, long n);
void aio_bias_activation_row_f64(const double *x, const double *bias, int act, double *out, long n);
void aio_swiglu_row_f32(const float *x, float *out, long f);
void aio_swiglu_row_f64(const double *x, double *out, long f);
#endif
