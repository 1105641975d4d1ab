# Position information and token embeddings. The contract is aiotranslate.ops.reference:
#   rotary(x (N, H, D), positions (N,), cos (P, R2), sin (P, R2), interleaved, n_threads): in place,
#     rotates the first 2*R2 features of every head of token n by the angles of table row positions[n];
#     features past 2*R2 pass through. Pairs (i, i + R2) half-split (Llama, GPT-NeoX), (2i, 2i + 1)
#     interleaved (GPT-J); (a, b) -> (a cos - b sin, b cos + a sin).
#   sinusoidal_table(out (P, C), inc, offset): out[p, i] = sin((p + offset) * exp(-inc * i)) for
#     i < C/2 and out[p, C/2 + i] = the cos of that angle; an odd last column is 0.
#   embedding(ids (N,), table (V, C), scale, out (N, C), n_threads): out[n] = table[ids[n]] * scale.
# Math is in double with one rounding to the output type, as the reference, so float32 rotary and
# embedding results equal it bit for bit. Positions and ids are checked here as well as in the
# wrappers: one out of range would read outside the tables.

from cython.parallel cimport prange
from libc.math cimport cos as c_cos, exp, sin as c_sin
from libc.string cimport memcpy

from common cimport floating

cdef enum:
    GRAIN = 32768  # elements per call below which threads cost more than they save


cdef inline int team_size(int n_threads, Py_ssize_t work) except -1:
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return n_threads if work >= GRAIN else 1


cdef int check_indices(const int[::1] ids, Py_ssize_t limit, str name) except -1:
    cdef Py_ssize_t i
    for i in range(ids.shape[0]):
        if not 0 <= ids[i] < limit:
            raise ValueError(f"{name}[{i}] = {ids[i]} is out of range [0, {limit})")
    return 0


cdef inline void rotate_half(floating *v, const float *c, const float *s, Py_ssize_t r2) noexcept nogil:
    cdef Py_ssize_t i
    cdef double a, b
    for i in range(r2):
        a = v[i]
        b = v[i + r2]
        v[i] = <floating>(a * c[i] - b * s[i])
        v[i + r2] = <floating>(b * c[i] + a * s[i])


cdef inline void rotate_interleaved(floating *v, const float *c, const float *s, Py_ssize_t r2) noexcept nogil:
    cdef Py_ssize_t i
    cdef double a, b
    for i in range(r2):
        a = v[2 * i]
        b = v[2 * i + 1]
        v[2 * i] = <floating>(a * c[i] - b * s[i])
        v[2 * i + 1] = <floating>(b * c[i] + a * s[i])


cdef void rotary_rows(floating *x, const int *positions, const float *cos, const float *sin,
                      Py_ssize_t n, Py_ssize_t h, Py_ssize_t d, Py_ssize_t r2,
                      bint interleaved, int nt) noexcept nogil:
    """Rotate the n * h heads of d features of x; head row belongs to token row // h."""
    cdef Py_ssize_t row
    if nt > 1:
        for row in prange(n * h, num_threads=nt, schedule='static'):
            rotate_head(x, positions, cos, sin, h, d, r2, interleaved, row)
    else:  # no parallel region at all: a decoding step's few heads cost less than entering one
        for row in range(n * h):
            rotate_head(x, positions, cos, sin, h, d, r2, interleaved, row)


cdef inline void rotate_head(floating *x, const int *positions, const float *cos, const float *sin, Py_ssize_t h,
                             Py_ssize_t d, Py_ssize_t r2, bint interleaved, Py_ssize_t row) noexcept nogil:
    """Head `row` of x (token row // h)."""
    cdef Py_ssize_t p = positions[row // h] * r2
    if interleaved:
        rotate_interleaved(x + row * d, cos + p, sin + p, r2)
    else:
        rotate_half(x + row * d, cos + p, sin + p, r2)


def rotary(floating[:, :, ::1] x, const int[::1] positions, const float[:, ::1] cos,
           const float[:, ::1] sin, bint interleaved, int n_threads):
    """Rotate x (N, H, D) in place by the angles of positions; see the header."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], d = x.shape[2], r2 = cos.shape[1]
    if positions.shape[0] != n:
        raise ValueError(f"positions has {positions.shape[0]} items for {n} tokens")
    if sin.shape[0] != cos.shape[0] or sin.shape[1] != r2:
        raise ValueError("cos and sin tables must have the same shape")
    if 2 * r2 > d:
        raise ValueError(f"rotary tables rotate {2 * r2} features, heads have {d}")
    check_indices(positions, cos.shape[0], "positions")
    cdef int nt = team_size(n_threads, n * h * 2 * r2)
    if n * h == 0 or r2 == 0:
        return
    with nogil:
        rotary_rows(&x[0, 0, 0], &positions[0], &cos[0, 0], &sin[0, 0], n, h, d, r2, interleaved, nt)


cdef void fill_sinusoidal(float *out, Py_ssize_t n, Py_ssize_t dim, double inc, long offset) noexcept nogil:
    cdef Py_ssize_t half = dim // 2, p, i
    cdef double freq, angle
    for i in range(half):  # column by column: one exp per frequency
        freq = exp(-inc * i)
        for p in range(n):
            angle = <double>(p + offset) * freq
            out[p * dim + i] = <float>c_sin(angle)
            out[p * dim + half + i] = <float>c_cos(angle)
    if dim % 2:
        for p in range(n):
            out[p * dim + dim - 1] = 0


def sinusoidal_table(float[:, ::1] out, double inc, long offset):
    """Fill out (P, C) with the sinusoidal position table; see the header."""
    if out.shape[0] == 0 or out.shape[1] == 0:
        return
    with nogil:
        fill_sinusoidal(&out[0, 0], out.shape[0], out.shape[1], inc, offset)


cdef void gather_rows(const int *ids, const floating *table, Py_ssize_t n, Py_ssize_t c, double scale,
                      floating *out, int nt) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const floating *src
    cdef floating *dst
    for i in prange(n, num_threads=nt, schedule='static'):
        src = table + ids[i] * c
        dst = out + i * c
        if scale == 1.0:
            memcpy(dst, src, c * sizeof(floating))
        else:
            for j in range(c):
                dst[j] = <floating>(src[j] * scale)


def embedding(const int[::1] ids, const floating[:, ::1] table, double scale, floating[:, ::1] out,
              int n_threads):
    """out (N, C) = table[ids] * scale; see the header."""
    cdef Py_ssize_t n = ids.shape[0], c = table.shape[1]
    if out.shape[0] != n or out.shape[1] != c:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {c})")
    check_indices(ids, table.shape[0], "ids")
    cdef int nt = team_size(n_threads, n * c)
    if n == 0 or c == 0:
        return
    with nogil:
        gather_rows(&ids[0], &table[0, 0], n, c, scale, &out[0, 0], nt)
