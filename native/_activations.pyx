# Elementwise activation with a fused bias add, and swiglu, over the rows of a matrix.
# Contract: aiotranslate.ops.reference.activation / swiglu; the math is activations_kernels.c and
# activation.h (shared with the GEMM epilogue); this layer checks shapes and spreads rows over threads.
# swiglu's out None: into a new array, returned.

from cython.parallel cimport prange

cimport numpy as cnp

from common cimport ACT_RELU, check_activation, check_threads, floating, output_rows, team_size

cnp.import_array()  # new_output makes arrays through numpy's C API

cdef extern from "activations_kernels.h" nogil:
    void aio_bias_activation_row_f32(const float *x, const float *bias, int act, float *out, long n)
    void aio_bias_activation_row_f64(const double *x, const double *bias, int act, double *out, long n)
    void aio_swiglu_row_f32(const float *x, float *out, long f)
    void aio_swiglu_row_f64(const double *x, double *out, long f)


cdef inline void activation_row(const floating *x, const floating *bias, int act, floating *out,
                                Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    if floating is float:
        aio_bias_activation_row_f32(x + i * n, bias, act, out + i * n, n)
    else:
        aio_bias_activation_row_f64(x + i * n, bias, act, out + i * n, n)


cdef inline void swiglu_row(const floating *x, floating *out, Py_ssize_t f, Py_ssize_t i) noexcept nogil:
    if floating is float:
        aio_swiglu_row_f32(x + 2 * i * f, out + i * f, f)
    else:
        aio_swiglu_row_f64(x + 2 * i * f, out + i * f, f)


cdef void activation_rows(const floating *x, const floating *bias, int act, floating *out, Py_ssize_t r,
                          Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    # relu and the bias add alone cost a few times less per element than the exp-based activations
    cdef int team = team_size(r, r * n if act > ACT_RELU else r * n // 4, n_threads)
    if team > 1:
        for i in prange(r, num_threads=team, schedule='static'):
            activation_row(x, bias, act, out, n, i)
    else:
        for i in range(r):
            activation_row(x, bias, act, out, n, i)


cdef void swiglu_rows(const floating *x, floating *out, Py_ssize_t r, Py_ssize_t f,
                      int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef int team = team_size(r, 2 * r * f, n_threads)
    if team > 1:
        for i in prange(r, num_threads=team, schedule='static'):
            swiglu_row(x, out, f, i)
    else:
        for i in range(r):
            swiglu_row(x, out, f, i)


def bias_activation(const floating[:, ::1] x, const floating[::1] bias, int act, floating[:, ::1] out,
                    int n_threads):
    """out = act(x + bias) for x (R, C), bias (C,) or None; out may be x (in place), or None: into a
    new array, returned (None is returned otherwise).

    act is an activation code of aiotranslate.ops.reference (ACT_NONE ... ACT_SILU).
    """
    cdef Py_ssize_t r = x.shape[0], n = x.shape[1]
    cdef const floating *bias_ptr = NULL
    cdef floating *op
    if bias is not None and bias.shape[0] != n:
        raise ValueError(f"bias has {bias.shape[0]} elements, expected {n}")
    check_activation(act)
    result = output_rows(out, r, n, &op)
    check_threads(n_threads)
    if r == 0 or n == 0:
        return result
    if bias is not None:
        bias_ptr = &bias[0]
    with nogil:
        activation_rows(&x[0, 0], bias_ptr, act, op, r, n, n_threads)
    return result


def swiglu(const floating[:, ::1] x, floating[:, ::1] out, int n_threads):
    """out = silu(x[:, :F]) * x[:, F:] for x (R, 2F), out (R, F) or None."""
    cdef Py_ssize_t r = x.shape[0], f = x.shape[1] // 2
    if x.shape[1] % 2:
        raise ValueError(f"swiglu needs an even number of columns (gate and up halves), got {x.shape[1]}")
    cdef floating *op
    result = output_rows(out, r, f, &op)
    check_threads(n_threads)
    if r == 0 or f == 0:
        return result
    with nogil:
        swiglu_rows(&x[0, 0], op, r, f, n_threads)
    return result
