# softmax / log_softmax over the rows of a matrix, with scale, additive mask, lengths and causal masking,
# and logsumexp of each row (their normalizer, for scoring one token without a log_softmax of the row).
# Contracts: aiotranslate.ops.reference.softmax / logsumexp; the row math is softmax_kernels.c, this
# layer checks shapes, resolves each row's visible prefix and spreads rows over the call's OpenMP team.

from cython.parallel cimport prange
from libc.math cimport INFINITY

cimport numpy as cnp

from common cimport check_output, check_threads, floating, output_rows, team_size, visible_columns

cnp.import_array()  # new_output makes arrays through numpy's C API

cdef extern from "softmax_kernels.h" nogil:
    void aio_softmax_row_f32(const float *x, const float *mask, float *out, long n, long limit,
                             double scale, int log_space)
    double aio_logsumexp_row_f32(const float *x, long n)
    double aio_logsumexp_row_f64(const double *x, long n)
    void aio_softmax_row_f64(const double *x, const double *mask, double *out, long n, long limit,
                             double scale, int log_space)


cdef inline void softmax_row(const floating *x, floating *out, Py_ssize_t n, Py_ssize_t i, double scale,
                             const floating *mask, Py_ssize_t mask_rows, const int *lengths,
                             Py_ssize_t rows_per_length, Py_ssize_t causal_q, bint log) noexcept nogil:
    cdef Py_ssize_t limit = visible_columns(i, n, lengths, rows_per_length, causal_q)
    if mask != NULL:
        mask += (i % mask_rows) * n
    if floating is float:
        aio_softmax_row_f32(x + i * n, mask, out + i * n, n, limit, scale, log)
    else:
        aio_softmax_row_f64(x + i * n, mask, out + i * n, n, limit, scale, log)


cdef void softmax_rows(const floating *x, floating *out, Py_ssize_t r, Py_ssize_t n, double scale,
                       const floating *mask, Py_ssize_t mask_rows, const int *lengths,
                       Py_ssize_t rows_per_length, Py_ssize_t causal_q, bint log,
                       int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef int team = team_size(r, r * n, n_threads)
    if team > 1:
        for i in prange(r, num_threads=team, schedule='static'):
            softmax_row(x, out, n, i, scale, mask, mask_rows, lengths, rows_per_length, causal_q, log)
    else:
        for i in range(r):
            softmax_row(x, out, n, i, scale, mask, mask_rows, lengths, rows_per_length, causal_q, log)


def softmax(const floating[:, ::1] x, floating[:, ::1] out, double scale, const floating[:, ::1] mask,
            const int[::1] lengths, int causal_q, bint log, int n_threads):
    """out = softmax (log: log_softmax) of scale * x + mask over the last axis of x (R, N).

    mask (Rm, N), Rm dividing R, or None; lengths (G,), G dividing R, or None; causal_q dividing R
    (0: off). See aiotranslate.ops.reference.softmax for the masking rules. out None: into a new
    array, returned (None is returned otherwise).
    """
    cdef Py_ssize_t r = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t mask_rows = 1, rows_per_length = 1
    cdef const floating *mask_ptr = NULL
    cdef const int *lengths_ptr = NULL
    cdef floating *op = NULL
    result = output_rows(out, r, n, &op)
    check_threads(n_threads)
    if mask is not None:
        mask_rows = mask.shape[0]
        if mask.shape[1] != n or mask_rows == 0 or r % mask_rows:
            raise ValueError(f"mask of shape {(mask.shape[0], mask.shape[1])} does not tile {(r, n)}")
    if lengths is not None:
        if lengths.shape[0] == 0 or r % lengths.shape[0]:
            raise ValueError(f"{lengths.shape[0]} lengths do not divide {r} rows")
        rows_per_length = r // lengths.shape[0]
    if causal_q < 0 or (causal_q and (r % causal_q or causal_q > n)):
        raise ValueError(f"causal_q={causal_q} must divide the {r} rows and be <= {n} columns")
    if r == 0 or n == 0:
        return result
    if mask is not None:
        mask_ptr = &mask[0, 0]
    if lengths is not None:
        lengths_ptr = &lengths[0]
    with nogil:
        softmax_rows(&x[0, 0], op, r, n, scale, mask_ptr, mask_rows, lengths_ptr, rows_per_length,
                     causal_q, log, n_threads)
    return result


cdef inline double logsumexp_row(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return aio_logsumexp_row_f32(x, n)
    else:
        return aio_logsumexp_row_f64(x, n)


def logsumexp(const floating[:, ::1] x, double[::1] out, int n_threads):
    """out[i] = log(sum_j exp(x[i, j])) for x (R, N), in double; see aiotranslate.ops.reference.logsumexp."""
    cdef Py_ssize_t r = x.shape[0], n = x.shape[1], i
    cdef const floating *xp
    cdef int team = team_size(r, r * n, n_threads)
    check_output(out.shape[0], 1, r, 1, n_threads)
    if n == 0:  # an empty sum
        out[:] = -INFINITY
        return
    if r == 0:
        return
    xp = &x[0, 0]
    with nogil:
        if team > 1:
            for i in prange(r, num_threads=team, schedule='static'):
                out[i] = logsumexp_row(xp + i * n, n)
        else:
            for i in range(r):
                out[i] = logsumexp_row(xp + i * n, n)
