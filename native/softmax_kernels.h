/* Row kernels of _softmax.pyx; the contract is in softmax_kernels.c. */
#ifndef AIO_SOFTMAX_KERNELS_H
#define AIO_SOFTMAX_KERNELS_H
void aio_softmax_row_f32(const float *x, const float *mask, float *out, long n, long limit, double scale,
                         int log_space);
void aio_softmax_row_f64(const double *x, const double *mask, double *out, long n, long limit, double scale,
                         int log_space);
double aio_logsumexp_row_f32(const float *x, long n);
double aio_logsumexp_row_f64(const double *x, long n);
#endif
