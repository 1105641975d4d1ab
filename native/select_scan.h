/* Vectorized scans for the selection kernels (_select.pyx). */
#ifndef AIO_SELECT_SCAN_H
#define AIO_SELECT_SCAN_H
#include <stddef.h>

/* Index of the first x[i] > t, or n when there is none. NaN is never above t. */
ptrdiff_t aio_first_above_f32(const float *x, ptrdiff_t n, float t);
ptrdiff_t aio_first_above_f64(const double *x, ptrdiff_t n, double t);

#endif
