# Declarations shared by the kernel modules.

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

cdef inline int check_output(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t expected_rows,
                             Py_ssize_t expected_cols, int n_threads) except -1:
    """ValueError unless out has the expected shape and n_threads >= 1 (what keeps a kernel in bounds)."""
    if rows != expected_rows or cols != expected_cols:
        raise ValueError(f"out has shape {(rows, cols)}, expected {(expected_rows, expected_cols)}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return 0
