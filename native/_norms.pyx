# layer_norm and rms_norm over the rows of a matrix, optionally fused with the residual add.
# Contract: aiotranslate.ops.reference.layer_norm / rms_norm; the row math is norms_kernels.c, this layer
# checks shapes and spreads rows over the call's OpenMP team. out None: into a new array, returned.

from cython.parallel cimport prange

cimport numpy as cnp

from common cimport check_threads, floating, output_rows, team_size

cnp.import_array()  # new_output makes arrays through numpy's C API

cdef extern from "norms_kernels.h" nogil:
    void aio_layer_norm_row_f32(const float *x, float *residual, const float *gamma, const float *beta,
                                float *out, long n, double eps)
    void aio_layer_norm_row_f64(const double *x, double *residual, const double *gamma,
                                const double *beta, double *out, long n, double eps)
    void aio_rms_norm_row_f32(const float *x, float *residual, const float *gamma, float *out, long n,
                              double eps)
    void aio_rms_norm_row_f64(const double *x, double *residual, const double *gamma, double *out, long n,
                              double eps)


cdef inline void norm_row(const floating *x, floating *residual, const floating *gamma,
                          const floating *beta, floating *out, Py_ssize_t n, Py_ssize_t i, double eps,
                          bint rms) noexcept nogil:
    # residual and beta may be NULL; beta is unused by rms_norm
    if residual != NULL:
        residual += i * n
    if floating is float:
        if rms:
            aio_rms_norm_row_f32(x + i * n, residual, gamma, out + i * n, n, eps)
        else:
            aio_layer_norm_row_f32(x + i * n, residual, gamma, beta, out + i * n, n, eps)
    else:
        if rms:
            aio_rms_norm_row_f64(x + i * n, residual, gamma, out + i * n, n, eps)
        else:
            aio_layer_norm_row_f64(x + i * n, residual, gamma, beta, out + i * n, n, eps)


cdef void norm_rows(const floating *x, floating *residual, const floating *gamma, const floating *beta,
                    floating *out, Py_ssize_t r, Py_ssize_t n, double eps, bint rms,
                    int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef int team = team_size(r, r * n, n_threads)
    if team > 1:
        for i in prange(r, num_threads=team, schedule='static'):
            norm_row(x, residual, gamma, beta, out, n, i, eps, rms)
    else:
        for i in range(r):
            norm_row(x, residual, gamma, beta, out, n, i, eps, rms)


cdef run(const floating[:, ::1] x, const floating[::1] gamma, const floating *beta, double eps,
         floating[:, ::1] residual, floating[:, ::1] out, bint rms, int n_threads):
    cdef Py_ssize_t r = x.shape[0], n = x.shape[1]
    cdef floating *residual_ptr = NULL
    cdef floating *op
    result = output_rows(out, r, n, &op)
    check_threads(n_threads)
    if gamma.shape[0] != n:
        raise ValueError(f"gamma has {gamma.shape[0]} elements, expected {n}")
    if residual is not None and (residual.shape[0] != r or residual.shape[1] != n):
        raise ValueError(f"residual has shape {(residual.shape[0], residual.shape[1])}, expected {(r, n)}")
    if r == 0 or n == 0:
        return result
    if residual is not None:
        residual_ptr = &residual[0, 0]
    with nogil:
        norm_rows(&x[0, 0], residual_ptr, &gamma[0], beta, op, r, n, eps, rms, n_threads)
    return result


def layer_norm(const floating[:, ::1] x, const floating[::1] gamma, const floating[::1] beta, double eps,
               floating[:, ::1] residual, floating[:, ::1] out, int n_threads):
    """out = (s - mean) / sqrt(var + eps) * gamma + beta over rows of s = x, or s = (residual += x).

    beta and residual may be None. out may be x.
    """
    cdef const floating *beta_ptr = NULL
    if beta is not None:
        if beta.shape[0] != x.shape[1]:
            raise ValueError(f"beta has {beta.shape[0]} elements, expected {x.shape[1]}")
        if beta.shape[0]:
            beta_ptr = &beta[0]
    return run(x, gamma, beta_ptr, eps, residual, out, False, n_threads)


def rms_norm(const floating[:, ::1] x, const floating[::1] gamma, double eps, floating[:, ::1] residual,
             floating[:, ::1] out, int n_threads):
    """out = s / sqrt(mean(s^2) + eps) * gamma over rows of s = x, or s = (residual += x)."""
    return run(x, gamma, <const floating *>NULL, eps, residual, out, True, n_threads)
