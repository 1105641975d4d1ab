# Selection over the last axis of x (R, N): argmax (greedy search) and top-k (beam search, top-k
# sampling). The contract is aiotranslate.ops.reference.argmax / topk:
#   argmax(x, out (R,), n_threads): index of each row's maximum; ties -> lowest index. N > 0.
#   topk(x, k, values (R, k), indices (R, k), n_threads): the k largest of each row sorted descending,
#     ties -> lower index first; 0 <= k <= N. values are read back from x, so a NaN stays NaN.
#   NaN ranks as -inf (below every number, tied with -inf); -0.0 equals 0.0.
# Both walk a row with a vectorized "first element above the threshold" scan (select_scan.c): for
# logits the threshold (the running max, the k-th best) settles after a few hits, so a vocab row costs
# about one pass at memory speed. k > SMALL_K sorts the whole row instead (LSD radix sort: O(N), and
# stable, which gives the index order of ties). Rows are shared among threads, a row never split.

from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, isnan
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from common cimport floating

cdef extern from "select_scan.h" nogil:
    Py_ssize_t aio_first_above_f32(const float *x, Py_ssize_t n, float t)
    Py_ssize_t aio_first_above_f64(const double *x, Py_ssize_t n, double t)

cdef enum:
    GRAIN = 32768  # elements per call below which threads cost more than they save
    SMALL_K = 64   # largest k kept in an insertion-sorted buffer (each insertion moves up to k items)
    RADIX = 256    # 8-bit digits


cdef inline int team_size(int n_threads, Py_ssize_t rows, Py_ssize_t work) except -1:
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return n_threads if rows > 1 and work >= GRAIN else 1


cdef inline Py_ssize_t first_above(const floating *x, Py_ssize_t start, Py_ssize_t n,
                                   floating t) noexcept nogil:
    """Index of the first x[i] > t with start <= i < n, or n."""
    if floating is float:
        return start + aio_first_above_f32(x + start, n - start, t)
    else:
        return start + aio_first_above_f64(x + start, n - start, t)


cdef Py_ssize_t argmax_row(const floating *x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t best = 0
    cdef Py_ssize_t j = first_above(x, 0, n, <floating>-INFINITY)
    while j < n:
        best = j
        j = first_above(x, j + 1, n, x[j])
    return best


cdef inline void insert(floating *val, int *idx, Py_ssize_t m, floating v, Py_ssize_t j) noexcept nogil:
    """Put (v, j) into the sorted buffer val/idx of m items, after every item >= v (j is the newest)."""
    while m > 0 and val[m - 1] < v:
        val[m] = val[m - 1]
        idx[m] = idx[m - 1]
        m -= 1
    val[m] = v
    idx[m] = <int>j


cdef void topk_small(const floating *x, Py_ssize_t n, Py_ssize_t k, floating *val, int *idx) noexcept nogil:
    """Top k >= 1 of x[:n], the output rows serving as the sorted buffer."""
    cdef Py_ssize_t j
    for j in range(k):
        insert(val, idx, j, <floating>-INFINITY if isnan(x[j]) else x[j], j)
    j = first_above(x, k, n, val[k - 1])
    while j < n:
        insert(val, idx, k - 1, x[j], j)  # the last item drops out
        j = first_above(x, j + 1, n, val[k - 1])
    for j in range(k):
        val[j] = x[idx[j]]  # NaN back in place of its -inf key


cdef inline uint64_t descending_key(floating v) noexcept nogil:
    """Unsigned key whose ascending order is v's descending order, NaN as -inf, -0.0 as 0.0."""
    cdef uint32_t u32
    cdef uint64_t u64
    if isnan(v):
        v = -INFINITY
    elif v == 0:
        v = 0  # drops the sign of -0.0
    if floating is float:
        memcpy(&u32, &v, 4)
        # Sign-magnitude -> ascending unsigned: flip all bits of negatives, the sign bit of positives.
        u32 = ~u32 if u32 >> 31 else u32 | (<uint32_t>1 << 31)
        return <uint32_t>~u32
    else:
        memcpy(&u64, &v, 8)
        u64 = ~u64 if u64 >> 63 else u64 | (<uint64_t>1 << 63)
        return ~u64


cdef void topk_sort(const floating *x, Py_ssize_t n, Py_ssize_t k, floating *val, int *idx,
                    uint64_t *keys, int *order, uint64_t *keys2, int *order2) noexcept nogil:
    """Top k of x[:n] by an LSD radix sort of the whole row; keys*/order* are scratch of n items."""
    cdef Py_ssize_t j, d, total, c
    cdef int shift
    cdef Py_ssize_t counts[RADIX]
    for j in range(n):
        keys[j] = descending_key(x[j])
        order[j] = <int>j
    for shift in range(0, 8 * sizeof(floating), 8):
        for d in range(RADIX):
            counts[d] = 0
        for j in range(n):
            counts[(keys[j] >> shift) & (RADIX - 1)] += 1
        if counts[(keys[0] >> shift) & (RADIX - 1)] == n:
            continue  # one digit value throughout: the pass would not move anything
        total = 0
        for d in range(RADIX):
            c = counts[d]
            counts[d] = total
            total += c
        for j in range(n):
            d = (keys[j] >> shift) & (RADIX - 1)
            keys2[counts[d]] = keys[j]
            order2[counts[d]] = order[j]
            counts[d] += 1
        keys, keys2 = keys2, keys
        order, order2 = order2, order
    for j in range(k):
        idx[j] = order[j]
        val[j] = x[order[j]]


def argmax(const floating[:, ::1] x, int[::1] out, int n_threads):
    """out[r] = index of the maximum of row r of x (R, N > 0); see the header for ties and NaN."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r
    if out.shape[0] != rows:
        raise ValueError(f"out has {out.shape[0]} items for {rows} rows")
    if n == 0:
        raise ValueError("argmax of an empty row is undefined")
    cdef int nt = team_size(n_threads, rows, rows * n)
    if rows == 0:
        return
    cdef const floating *px = &x[0, 0]
    cdef int *po = &out[0]
    for r in prange(rows, nogil=True, num_threads=nt, schedule='static'):
        po[r] = <int>argmax_row(px + r * n, n)


def topk(const floating[:, ::1] x, int k, floating[:, ::1] values, int[:, ::1] indices, int n_threads):
    """values, indices (R, k) = the k largest of each row of x (R, N), sorted; see the header."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must lie in [0, {n}]")
    if values.shape[0] != rows or values.shape[1] != k or indices.shape[0] != rows or indices.shape[1] != k:
        raise ValueError(f"values and indices must have shape {(rows, k)}")
    cdef int nt = team_size(n_threads, rows, rows * n)
    if rows == 0 or k == 0:
        return
    cdef const floating *px = &x[0, 0]
    cdef floating *pv = &values[0, 0]
    cdef int *pi = &indices[0, 0]
    cdef uint64_t *keys = NULL
    cdef int failed = 0
    if k <= SMALL_K:
        for r in prange(rows, nogil=True, num_threads=nt, schedule='static'):
            topk_small(px + r * n, n, k, pv + r * k, pi + r * k)
        return
    with nogil, parallel(num_threads=nt):
        # Per thread: two key arrays then two order arrays, n items each.
        keys = <uint64_t *>malloc(n * (2 * sizeof(uint64_t) + 2 * sizeof(int)))
        for r in prange(rows, schedule='static'):
            if keys == NULL:
                failed += 1
            else:
                topk_sort(px + r * n, n, k, pv + r * k, pi + r * k,
                          keys, <int *>(keys + 2 * n), keys + n, <int *>(keys + 2 * n) + n)
        free(keys)
    if failed:
        raise MemoryError(f"top-k scratch for rows of {n}")
