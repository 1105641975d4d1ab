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
