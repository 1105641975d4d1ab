# Declarations shared by the kernel modules.

cimport numpy as cnp

# Activation codes, the same numbers as aiotranslate.ops.reference.ACT_*.
cdef enum Activation:
    ACT_NONE = 0
    ACT_RELU = 1
    ACT_GELU = 2
    ACT_GELU_TANH = 3
    ACT_SILU = 4

ctypedef fused floating:
    float
    double

# Elements below which a row kernel stays on the calling thread: waking an OpenMP team costs more.
cdef enum:
    PARALLEL_GRAIN = 32768

cdef inline int team_size(Py_ssize_t rows, Py_ssize_t elements, int n_threads) noexcept nogil:
    """The OpenMP team for a call over `rows` rows: n_threads, or 1 for small work."""
    return n_threads if rows > 1 and elements >= PARALLEL_GRAIN else 1

cdef inline int check_threads(int n_threads) except -1:
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return 0


cdef inline int check_output(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t expected_rows,
                             Py_ssize_t expected_cols, int n_threads) except -1:
    """ValueError unless out has the expected shape and n_threads >= 1 (what keeps a kernel in bounds)."""
    if rows != expected_rows or cols != expected_cols:
        raise ValueError(f"out has shape {(rows, cols)}, expected {(expected_rows, expected_cols)}")
    return check_threads(n_threads)


cdef inline Py_ssize_t visible_columns(Py_ssize_t i, Py_ssize_t n, const int *lengths, Py_ssize_t rows_per_length,
                                       Py_ssize_t causal_q) noexcept nogil:
    """The columns [0, limit) that row i of a softmax over n columns sees: lengths[i // rows_per_length]
    (lengths may be NULL), and with causal_q > 0 query i % causal_q of a block that ends at column n - 1."""
    cdef Py_ssize_t limit = n
    if lengths != NULL:
        limit = min(limit, max(<Py_ssize_t>0, <Py_ssize_t>lengths[i // rows_per_length]))
    if causal_q > 0:
        limit = min(limit, n - causal_q + i % causal_q + 1)
    return limit


cdef inline bint overlap(const void *p, Py_ssize_t p_bytes, const void *q, Py_ssize_t q_bytes) noexcept nogil:
    """Whether the byte ranges [p, p + p_bytes) and [q, q + q_bytes) intersect."""
    cdef const char *a = <const char *> p
    cdef const char *b = <const char *> q
    return p_bytes > 0 and q_bytes > 0 and a < b + q_bytes and b < a + p_bytes


cdef inline object new_output(int nd, cnp.npy_intp *dims, int typenum, void **data):
    """A new C-contiguous array for a kernel to write (the ops' common call passes out=None), and its data
    in *data: made through numpy's C API and used as a pointer, for numpy's first buffer request on an
    array costs ~0.4 us, a few % of a (1, 512) x (512, 512) product."""
    result = cnp.PyArray_EMPTY(nd, dims, typenum, 0)
    data[0] = cnp.PyArray_DATA(result)
    return result


cdef inline object output_rows(floating[:, ::1] out, Py_ssize_t m, Py_ssize_t n, floating **data):
    """Where a kernel writes its (m, n) result: out (checked), or with out None a new array
    (`new_output`), returned (None is returned otherwise). *data: its first element, NULL when empty."""
    cdef cnp.npy_intp dims[2]
    cdef void *new_data
    if out is None:
        dims[0], dims[1] = m, n
        result = new_output(2, dims, cnp.NPY_FLOAT32 if floating is float else cnp.NPY_FLOAT64, &new_data)
        data[0] = <floating *> new_data if m and n else NULL
        return result
    if out.shape[0] != m or out.shape[1] != n:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({m}, {n})")
    data[0] = &out[0, 0] if m and n else NULL
    return None


cdef inline int check_activation(int act) except -1:
    """ValueError unless act is an ACT_* code. Compared as ints: Cython casts act to the enum's type
    in `ACT_NONE <= act`, unsigned in GCC, which let negative codes through."""
    if act < <int> ACT_NONE or act > <int> ACT_SILU:
        raise ValueError(f"unknown activation code {act}")
    return 0


cdef inline int check_linear(Py_ssize_t m, Py_ssize_t n, const floating[::1] bias, int act,
                             const floating[:, ::1] residual, int n_threads) except -1:
    """ValueError unless bias is (n,) or None, residual (m, n) or None, act an ACT_* code and
    n_threads >= 1: the epilogue arguments of a linear kernel. Typed memoryviews, not objects: an
    object argument would wrap each view in a new Python memoryview, ~1 us per call."""
    if bias is not None and bias.shape[0] != n:
        raise ValueError(f"bias has {bias.shape[0]} values, expected N = {n}")
    if residual is not None and (residual.shape[0] != m or residual.shape[1] != n):
        raise ValueError(f"residual has shape ({residual.shape[0]}, {residual.shape[1]}), expected ({m}, {n})")
    check_activation(act)
    return check_threads(n_threads)
