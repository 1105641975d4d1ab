# Selection over the last axis of x (R, N): argmax (greedy search) and top-k (beam search, top-k
# sampling). The contract is aiotranslate.ops.reference.argmax / topk:
#   argmax(x, out (R,), n_threads): index of each row's maximum; ties -> lowest index. N > 0.
#   topk(x, k, values (R, k), indices (R, k), n_threads): the k largest of each row sorted descending,
#     ties -> lower index first; 0 <= k <= N. values are read back from x, so a NaN stays NaN.
#   NaN ranks as -inf (below every number, tied with -inf); -0.0 equals 0.0.
# argmax and top-k with k < N / SORT_FRACTION walk a row with a vectorized "first element above the
# threshold" scan (select_scan.c); the threshold is the running max, or the root of a heap of the k best
# so far (the worst of them). For logits it settles after a few hits, so a vocab row costs about one pass
# at memory speed; O(N log k) at worst. Larger k sort the whole row (LSD radix sort: O(N), and stable,
# which keeps ties in index order). Rows are shared among threads, a row is never split.

from cython.parallel cimport parallel, prange
from libc.limits cimport INT_MAX
from libc.math cimport INFINITY, isnan
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from common cimport floating

cdef extern from "select_scan.h" nogil:
    Py_ssize_t aio_first_above_f32(const float *x, Py_ssize_t n, float t)
    Py_ssize_t aio_first_above_f64(const double *x, Py_ssize_t n, double t)

ctypedef struct Item:
    uint64_t key  # descending_key of the value
    int index

cdef enum:
    GRAIN = 32768       # elements per call below which threads cost more than they save
    SORT_FRACTION = 16  # measured crossover: for larger k the heap's unpredictable branches cost more
    RADIX = 256         # 8-bit digits


cdef inline int team_size(int n_threads, Py_ssize_t rows, Py_ssize_t n) except -1:
    if n > INT_MAX:
        raise ValueError(f"rows of {n} values: indices are int32")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return n_threads if rows > 1 and rows * n >= GRAIN else 1


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


cdef inline bint worse(floating va, int ia, floating vb, int ib) noexcept nogil:
    """(va, ia) ranks below (vb, ib): a smaller value, or the same value at a higher index."""
    return va < vb or (va == vb and ia > ib)


cdef void sift_down(floating *val, int *idx, Py_ssize_t m, Py_ssize_t i) noexcept nogil:
    """Restore the heap order (the worst item at the root) of val/idx[:m] below position i."""
    cdef floating v = val[i]
    cdef int vi = idx[i]
    cdef Py_ssize_t c = 2 * i + 1
    while c < m:
        if c + 1 < m and worse(val[c + 1], idx[c + 1], val[c], idx[c]):
            c += 1
        if not worse(val[c], idx[c], v, vi):
            break
        val[i] = val[c]
        idx[i] = idx[c]
        i = c
        c = 2 * i + 1
    val[i] = v
    idx[i] = vi


cdef void topk_heap(const floating *x, Py_ssize_t n, Py_ssize_t k, floating *val, int *idx) noexcept nogil:
    """Top k >= 1 of x[:n] through a heap of the best k so far, kept in the output rows.

    Only elements above the root (the worst kept) can enter, found by the vectorized scan;
    O(n + k log k log(n / k)) for values in random order, O(n log k) at worst."""
    cdef Py_ssize_t j
    for j in range(k):
        val[j] = <floating>-INFINITY if isnan(x[j]) else x[j]
        idx[j] = <int>j
    for j in range(k // 2 - 1, -1, -1):
        sift_down(val, idx, k, j)
    j = first_above(x, k, n, val[0])
    while j < n:
        val[0] = x[j]
        idx[0] = <int>j
        sift_down(val, idx, k, 0)
        j = first_above(x, j + 1, n, val[0])
    for j in range(k - 1, 0, -1):  # heap sort: the worst goes last, best first remains
        val[0], val[j] = val[j], val[0]
        idx[0], idx[j] = idx[j], idx[0]
        sift_down(val, idx, j, 0)
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
                    Item *items, Item *spare) noexcept nogil:
    """Top k of x[:n] by an LSD radix sort of the whole row; items and spare are scratch of n."""
    cdef Py_ssize_t j, total, c
    cdef int p, d, shift, passes = sizeof(floating)
    cdef int counts[8][RADIX]  # a histogram per pass (byte), all taken in the first read
    memset(counts, 0, sizeof(counts))
    for j in range(n):
        items[j].key = descending_key(x[j])
        items[j].index = <int>j
        for p in range(passes):
            counts[p][(items[j].key >> (8 * p)) & (RADIX - 1)] += 1
    for p in range(passes):
        shift = 8 * p
        if counts[p][(items[0].key >> shift) & (RADIX - 1)] == n:
            continue  # one digit value throughout: the pass would not move anything
        total = 0
        for d in range(RADIX):
            c = counts[p][d]
            counts[p][d] = <int>total
            total += c
        for j in range(n):  # stable: equal keys keep their (index) order
            d = (items[j].key >> shift) & (RADIX - 1)
            spare[counts[p][d]] = items[j]
            counts[p][d] += 1
        items, spare = spare, items
    for j in range(k):
        idx[j] = items[j].index
        val[j] = x[idx[j]]


def argmax(const floating[:, ::1] x, int[::1] out, int n_threads):
    """out[r] = index of the maximum of row r of x (R, N > 0); see the header for ties and NaN."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r
    if out.shape[0] != rows:
        raise ValueError(f"out has {out.shape[0]} items for {rows} rows")
    if n == 0:
        raise ValueError("argmax of an empty row is undefined")
    cdef int nt = team_size(n_threads, rows, n)
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
    cdef int nt = team_size(n_threads, rows, n)
    if rows == 0 or k == 0:
        return
    cdef const floating *px = &x[0, 0]
    cdef floating *pv = &values[0, 0]
    cdef int *pi = &indices[0, 0]
    cdef Item *items = NULL
    cdef int failed = 0
    if k * SORT_FRACTION < n:
        for r in prange(rows, nogil=True, num_threads=nt, schedule='static'):
            topk_heap(px + r * n, n, k, pv + r * k, pi + r * k)
        return
    with nogil, parallel(num_threads=nt):
        items = <Item *>malloc(2 * n * sizeof(Item))  # per thread: items, then spare
        for r in prange(rows, schedule='static'):
            if items == NULL:
                failed += 1
            else:
                topk_sort(px + r * n, n, k, pv + r * k, pi + r * k, items, items + n)
        free(items)
    if failed:
        raise MemoryError(f"top-k scratch for rows of {n}")
