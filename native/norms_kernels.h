/* Row kernels of _norms.pyx; the contract is in norms_kernels.c. */
#ifndef AIO_NORMS_KERNELS_H
#define AIO_NORMS_KERNELS_H
void aio_layer_norm_row_f32(const float *x, float *residual, const float *gamma, const float *beta,
                            float *out, long n, double eps);
void aio_layer_norm_row_f64(const double *x, double *residual, const double *gamma, const double *beta,
                            double *out, long n, double eps);
void aio_rms_norm_row_f32(const float *x, float *residual, const float *gamma, float *out, long n,
                          double eps);
void aio_rms_norm_row_f64(const double *x, double *residual, const double *gamma, double *out, long n,
                          double eps);
#endif
