# GEMM kernels for aiotranslate.ops.gemm: `linear` (x @ w^T with a fused bias / activation / residual
# epilogue) and `batched_matmul` (the attention products Q @ K^T and P @ V).
#
# Design
# - Layouts: row-major, C-contiguous. linear: x (M, K), w (N, K) as torch.nn.Linear stores it,
#   out (M, N). batched_matmul: a (G, M, K), b (G, N, K) with trans_b else (G, K, N), out (G, M, N).
# - Which code: float32 products with few rows (M <= SMALL_M: decoding, short prompts) or short
#   dot products (K <= SHORT_K: attention over head dims and short sequences) run our
#   register-blocked kernels (gemm_kernels.c): dot-product tiles for the fewest rows, outer-product
#   tiles over a weight panel packed on the fly from M = 16 (design and measurements there).
#   The rest, and all of float64, call BLAS ?gemm (scipy.linalg.cython_blas) with the row-major
#   trick C^T = B^T A^T.
# - Threads: linear cuts the output into blocks (64 columns for our kernels; up to 4 x M/512 for
#   BLAS), batched_matmul into its G products; prange hands each thread runs of them: 'guided' for
#   linear (shrinking runs, so a thread slowed by memory or the OS does not hold the others at the
#   barrier: GPT-2 batch 32 decode linears 1.53-1.64x -> 1.71-1.81x from the second thread, measured
#   alternately), 'static' elsewhere. Every BLAS call is single-threaded (ops/gemm.py holds scipy's
#   OpenBLAS to 1 thread), so n_threads is the only team size and concurrent callers share no BLAS pool. BLAS blocks depend
#   on the shape only, never on n_threads, and our kernels compute every element the same way in
#   any split: results are bitwise identical for every n_threads. Work under GRAIN multiply-adds
#   per thread runs on fewer threads, down to serial.
# - Epilogue: each block gets + bias, activation (activation.h), + residual right after its
#   product, while it is in cache. BLAS and our kernels write out before the epilogue reads
#   residual, so a residual overlapping out is copied first (in-place `out=residual` works).
# - linear_packed is linear on a weight packed once into k-major panels of 64 columns (ops.PackedWeight):
#   our outer-product tiles for every M, no packing per call, no BLAS. Threads split blocks of up to
#   PK_ROWS rows x one panel (two for a single row: two streams), in row-major order; the epilogue
#   runs on each block. A single row's equal blocks go 'static', each thread one contiguous run, the
#   same every call (as OpenBLAS splits its gemv): (1, 576, 1536) at 2 threads in benchmarks/kernels.py
#   0.88-0.89x numpy in three runs -> 0.89-1.03x in four; OPUS-MT float32 greedy at batch 1, 2 threads,
#   3.98 -> 3.60 and 5.60 -> 5.55 ms a step (alternating, two processes); from memory (48 weights in
#   turn) equal. (The unpacked linear's 64-column blocks measured no better static: left guided.)
# - linear_int8w is the weight-only int8 linear: float32 x and products, the weight stored as int8
#   with a float32 scale per block of 32 along K in panels of 64 columns (gemm_kernels.c, "Weight-only
#   int8"). Threads split the panels, and the epilogue runs on each panel as above.
# - attention (attention.pxi, included at the end) is the fused softmax(q k^T) v of ops.attention.
# - Every kernel the ops call the short way (`ops._dispatch`: the linears here and in _qgemm, attention,
#   the norms, the activations, swiglu, softmax) writes into a caller-owned out, or with out None into a
#   new array it returns (common.new_output).

from cython.parallel cimport prange, threadid
from libc.limits cimport INT_MAX
from libc.stdint cimport int8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

cimport numpy as cnp

from common cimport ACT_NONE, check_linear, check_threads, floating, new_output, output_rows, overlap, visible_columns

cnp.import_array()  # new_output makes arrays through numpy's C API

cdef extern from "activation.h" nogil:
    void aio_activate_f32(float *x, long n, int act)
    void aio_activate_f64(double *x, long n, int act)

cdef extern from "gemm_kernels.h" nogil:
    void aio_gemm_nt_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                         long m, long n, long k, float alpha, const float *b_next, long n_next)
    void aio_gemm_nn_f32(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                         long m, long n, long k, float alpha)
    enum:
        AIO_PANEL
        AIO_WQ_BLOCK
    void aio_gemm_pk_f32(const float *a, long lda, const float *panel, float *c, long ldc, long m, long n, long k,
                         const float *next)
    void aio_gemm_wq_f32(const float *a, long lda, const int8_t *panel, const float *scales, long lds, float *c,
                         long ldc, long m, long n, long k, const int8_t *next)
    int aio_gemm_isa()
    int aio_gemm_use_isa(int isa)
    enum: AIO_ISA_BASE

INSTRUCTION_SETS = ("base", "avx2", "avx512")
PANEL = AIO_PANEL
WQ_BLOCK = AIO_WQ_BLOCK

cdef enum:
    # float32 products with at most SMALL_M rows or at most SHORT_K terms use our kernels (where
    # they beat sgemm on this machine: torch's time / ours 1.0-1.2 at M = 128..256 with weights out
    # of L2, 0.85 with OpenBLAS; at M = 512 OpenBLAS is ahead). The baseline build has no
    # outer-product tiles: its dot-product tiles stop at DOT_SMALL_M rows.
    SMALL_M = 256
    DOT_SMALL_M = 64
    SHORT_K = 128
    # Columns per block of our kernels in linear: the unit of the thread split and of the epilogue.
    COLS = 64
    # BLAS blocks of linear: rows split into blocks of at most BLAS_ROWS, columns into at most
    # BLAS_COL_BLOCKS blocks of at least BLAS_MIN_COLS. Each block repacks x, so fewer is faster
    # on one thread (512 x 256 blocks cost 6% at (512, 512, 2048), 512 x 512 blocks 3%); four
    # still feed two to four threads.
    BLAS_ROWS = 512
    BLAS_COL_BLOCKS = 4
    BLAS_MIN_COLS = 256
    # Narrow outputs (one column block by the rules above, e.g. N = 384) split their rows into up to
    # BLAS_NARROW_BLOCKS blocks of at least BLAS_MIN_ROWS, so that threads have work (else the whole
    # product ran on one thread up to M = 512); the plan still depends on the shape only.
    BLAS_NARROW_BLOCKS = 4
    BLAS_MIN_ROWS = 64
    # Rows of x per block of linear_packed: at most PK_ROWS x K floats of x are read by a panel's
    # tiles, from L2.
    PK_ROWS = 256
    # Fewest multiply-adds worth handing to one more thread (an OpenMP fork/join costs a few us).
    GRAIN = 65536

cdef char TRANS = b'T'
cdef char NO_TRANS = b'N'


cdef inline Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline Py_ssize_t _split(Py_ssize_t size, Py_ssize_t parts, Py_ssize_t multiple) noexcept nogil:
    """Block size cutting size into at most `parts` blocks, rounded up to a multiple of `multiple`."""
    return _cdiv(_cdiv(size, parts), multiple) * multiple


cdef inline int _team(int n_threads, Py_ssize_t blocks, double work) noexcept nogil:
    """Threads worth using: at most n_threads and blocks, at least GRAIN multiply-adds each."""
    cdef double by_work = work / GRAIN
    cdef Py_ssize_t t = n_threads
    if blocks < t:
        t = blocks
    if by_work < t:
        t = <Py_ssize_t> by_work
    return <int> t if t > 1 else 1


cdef inline void _blas(char *ta, char *tb, int m, int n, int k, floating alpha,
                       const floating *a, int lda, const floating *b, int ldb,
                       floating *c, int ldc) noexcept nogil:
    """Column-major C (m, n) = alpha op(A) op(B), one thread; BLAS does not write A or B."""
    cdef floating beta = 0
    if floating is float:
        sgemm(ta, tb, &m, &n, &k, &alpha, <float *> a, &lda, <float *> b, &ldb, &beta, c, &ldc)
    else:
        dgemm(ta, tb, &m, &n, &k, &alpha, <double *> a, &lda, <double *> b, &ldb, &beta, c, &ldc)


cdef inline bint _own_kernel(Py_ssize_t m, Py_ssize_t k) noexcept nogil:
    return m <= (DOT_SMALL_M if aio_gemm_isa() == AIO_ISA_BASE else SMALL_M) or k <= SHORT_K


cdef inline void _product_nt(const floating *a, Py_ssize_t lda, const floating *b, Py_ssize_t ldb,
                             floating *c, Py_ssize_t ldc, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                             floating alpha, const floating *b_next, Py_ssize_t n_next) noexcept nogil:
    """c (m, n) = alpha a b^T for row-major a (m, k) and b (n, k); ld* are the row strides. b_next
    (n_next rows like b, or NULL): the b of the next product, which our kernels prefetch."""
    if floating is float:
        if _own_kernel(m, k):
            aio_gemm_nt_f32(a, lda, b, ldb, c, ldc, m, n, k, alpha, b_next, n_next)
            return
    # c^T (n, m) = b (n, k) a^T: BLAS sees b as a column-major (k, n) matrix to transpose.
    _blas(&TRANS, &NO_TRANS, <int> n, <int> m, <int> k, alpha, b, <int> max(ldb, 1), a,
          <int> max(lda, 1), c, <int> ldc)


cdef inline void _product_nn(const floating *a, Py_ssize_t lda, const floating *b, Py_ssize_t ldb,
                             floating *c, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                             floating alpha) noexcept nogil:
    """c (m, n) = alpha a b for row-major a (m, k) and b (k, n); ld* are the row strides."""
    if floating is float:
        if _own_kernel(m, k):
            aio_gemm_nn_f32(a, lda, b, ldb, c, n, m, n, k, alpha)
            return
    _blas(&NO_TRANS, &NO_TRANS, <int> n, <int> m, <int> k, alpha, b, <int> max(ldb, 1), a,
          <int> max(lda, 1), c, <int> n)


cdef inline void _epilogue(floating *out, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t cols,
                           const floating *bias, int act, const floating *residual) noexcept nogil:
    """out = act(out + bias) + residual on a rows x cols block (row stride ld for out and residual)."""
    cdef Py_ssize_t i, j
    cdef floating *row
    for i in range(rows):
        row = out + i * ld
        if bias != NULL:
            for j in range(cols):
                row[j] += bias[j]
        if act != ACT_NONE:
            if floating is float:
                aio_activate_f32(row, cols, act)
            else:
                aio_activate_f64(row, cols, act)
        if residual != NULL:
            for j in range(cols):
                row[j] += residual[i * ld + j]


cdef inline void _linear_block(const floating *x, const floating *w, const floating *bias, int act,
                               const floating *residual, floating *out, Py_ssize_t m, Py_ssize_t n,
                               Py_ssize_t k, Py_ssize_t rows, Py_ssize_t cols,
                               Py_ssize_t block) noexcept nogil:
    """Block number `block` of the grid of rows x cols blocks over out (m, n), row-major order."""
    cdef Py_ssize_t col_blocks = _cdiv(n, cols)
    cdef Py_ssize_t r0 = (block // col_blocks) * rows, c0 = (block % col_blocks) * cols
    cdef Py_ssize_t r = min(rows, m - r0), c = min(cols, n - c0)
    cdef Py_ssize_t at = r0 * n + c0
    cdef const floating *block_bias = NULL
    cdef const floating *block_residual = NULL
    cdef const floating *w_next = NULL
    if c0 + cols < n:
        w_next = w + (c0 + cols) * k
    if bias != NULL:
        block_bias = bias + c0
    if residual != NULL:
        block_residual = residual + at
    _product_nt(x + r0 * k, k, w + c0 * k, k, out + at, n, r, c, k, <floating> 1, w_next,
                min(cols, n - c0 - cols))
    _epilogue(out + at, n, r, c, block_bias, act, block_residual)


cdef void linear_core(const floating *x, const floating *w, const floating *bias, int act,
                      const floating *residual, floating *out, Py_ssize_t m, Py_ssize_t n,
                      Py_ssize_t k, int n_threads) noexcept nogil:
    """out (m, n) = act(x (m, k) @ w (n, k)^T + bias (n)) + residual (m, n); bias, residual may be NULL."""
    cdef Py_ssize_t rows, cols, block, blocks, row_parts, col_parts
    cdef int team
    if m == 0 or n == 0:
        return
    if floating is float and _own_kernel(m, k):
        rows, cols = m, COLS
    else:
        row_parts = _cdiv(m, BLAS_ROWS)
        col_parts = min(BLAS_COL_BLOCKS, max(1, n // BLAS_MIN_COLS))
        if col_parts == 1:
            row_parts = max(row_parts, min(BLAS_NARROW_BLOCKS, m // BLAS_MIN_ROWS))
        rows = _split(m, row_parts, 16)
        cols = _split(n, col_parts, 64)
    blocks = _cdiv(m, rows) * _cdiv(n, cols)
    team = _team(n_threads, blocks, <double> m * n * k)
    if team > 1:
        for block in prange(blocks, num_threads=team, schedule='guided'):
            _linear_block(x, w, bias, act, residual, out, m, n, k, rows, cols, block)
    else:
        for block in range(blocks):
            _linear_block(x, w, bias, act, residual, out, m, n, k, rows, cols, block)


cdef void batched_matmul_core(const floating *a, Py_ssize_t sa, Py_ssize_t lda,
                              const floating *b, Py_ssize_t sb, Py_ssize_t ldb, floating *out,
                              Py_ssize_t g, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, bint trans_b,
                              floating alpha, int n_threads) noexcept nogil:
    """out[i] = alpha a[i] @ (b[i]^T if trans_b else b[i]) for i < g; threads split the batch.

    a[i] starts at a + i * sa with row stride lda (likewise b): KV-cache slices are read in place.
    out is contiguous (g, m, n)."""
    cdef Py_ssize_t i
    cdef int team = _team(n_threads, g, <double> g * m * n * k)
    if m == 0 or n == 0:
        return
    if team > 1:
        for i in prange(g, num_threads=team, schedule='static'):
            _batch_item(a, sa, lda, b, sb, ldb, out, g, i, m, n, k, trans_b, alpha)
    else:
        for i in range(g):
            _batch_item(a, sa, lda, b, sb, ldb, out, g, i, m, n, k, trans_b, alpha)


cdef inline void _batch_item(const floating *a, Py_ssize_t sa, Py_ssize_t lda, const floating *b,
                             Py_ssize_t sb, Py_ssize_t ldb, floating *out, Py_ssize_t g, Py_ssize_t i,
                             Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, bint trans_b,
                             floating alpha) noexcept nogil:
    """Product i of batched_matmul_core."""
    cdef const floating *b_next = b + (i + 1) * sb if i + 1 < g else NULL
    if trans_b:
        _product_nt(a + i * sa, lda, b + i * sb, ldb, out + i * m * n, n, m, n, k, alpha, b_next, n)
    else:
        _product_nn(a + i * sa, lda, b + i * sb, ldb, out + i * m * n, m, n, k, alpha)


cdef int _check_sizes(int n_threads, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) except -1:
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if m > INT_MAX or n > INT_MAX or k > INT_MAX:
        raise ValueError(f"dimensions ({m}, {n}, {k}) exceed the BLAS integer range")
    return 0


def linear(const floating[:, ::1] x, const floating[:, ::1] w, const floating[::1] bias, int act,
           const floating[:, ::1] residual, floating[:, ::1] out, int n_threads):
    """out = act(x @ w.T + bias) + residual for x (M, K), w (N, K), bias (N,) or None, residual
    (M, N) or None (out itself allowed), act an ACT_* code; n_threads: OpenMP team size. out None:
    into a new array, returned (so for every linear kernel)."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], n = w.shape[0], item = sizeof(floating)
    cdef const floating *xp = NULL
    cdef const floating *wp = NULL
    cdef const floating *bp = NULL
    cdef const floating *rp = NULL
    cdef floating *op = NULL
    if w.shape[1] != k:
        raise ValueError(f"x ({m}, {k}) and w ({n}, {w.shape[1]}) do not fit x @ w.T")
    result = output_rows(out, m, n, &op)
    check_linear(m, n, bias, act, residual, n_threads)
    _check_sizes(n_threads, m, n, k)
    if m == 0 or n == 0:
        return result
    if k:
        xp, wp = &x[0, 0], &w[0, 0]
    if overlap(xp, m * k * item, op, m * n * item) or overlap(wp, n * k * item, op, m * n * item):
        raise ValueError("out must not overlap x or w")
    if bias is not None:
        bp = &bias[0]
        if overlap(bp, n * item, op, m * n * item):
            raise ValueError("out must not overlap bias")
    if residual is not None:
        if overlap(&residual[0, 0], m * n * item, op, m * n * item):
            residual = residual.copy()
        rp = &residual[0, 0]
    with nogil:
        linear_core(xp, wp, bp, act, rp, op, m, n, k, n_threads)
    return result


def batched_matmul(const floating[:, :, :] a, const floating[:, :, :] b, floating[:, :, ::1] out,
                   bint trans_b, double alpha, int n_threads):
    """out[g] = alpha * a[g] @ (b[g].T if trans_b else b[g]) for a (G, M, K), b (G, N, K) with
    trans_b else (G, K, N), out (G, M, N); n_threads: OpenMP team size."""
    cdef Py_ssize_t g = a.shape[0], m = a.shape[1], k = a.shape[2], item = sizeof(floating)
    cdef Py_ssize_t n = b.shape[1] if trans_b else b.shape[2]
    cdef Py_ssize_t kb = b.shape[2] if trans_b else b.shape[1]
    cdef const floating *ap = NULL
    cdef const floating *bp = NULL
    cdef floating *op = NULL
    if b.shape[0] != g or kb != k or out.shape[0] != g or out.shape[1] != m or out.shape[2] != n:
        raise ValueError(f"a ({g}, {m}, {k}), b ({b.shape[0]}, {b.shape[1]}, {b.shape[2]}) "
                         f"(trans_b={trans_b}) and out ({out.shape[0]}, {out.shape[1]}, "
                         f"{out.shape[2]}) do not fit out = a @ b")
    _check_sizes(n_threads, m, n, k)
    if g == 0 or m == 0 or n == 0:
        return
    if (a.strides[2] != item and k > 1) or (b.strides[2] != item and b.shape[2] > 1):
        raise ValueError("a and b need a contiguous last axis (outer axes may be strided)")
    # Element strides of the outer axes (a KV-cache slice keeps the cache's row stride).
    cdef Py_ssize_t sa = a.strides[0] // item, lda = a.strides[1] // item
    cdef Py_ssize_t sb = b.strides[0] // item, ldb = b.strides[1] // item
    cdef Py_ssize_t b_rows = b.shape[1]
    op = &out[0, 0, 0]
    if k:
        ap, bp = &a[0, 0, 0], &b[0, 0, 0]
    if (overlap(ap, ((g - 1) * sa + (m - 1) * lda + k) * item, op, g * m * n * item)
            or overlap(bp, ((g - 1) * sb + (b_rows - 1) * ldb + b.shape[2]) * item, op, g * m * n * item)):
        raise ValueError("out must not overlap a or b")
    with nogil:
        batched_matmul_core(ap, sa, lda, bp, sb, ldb, op, g, m, n, k, trans_b, <floating> alpha, n_threads)


cdef int _check_panels(Py_ssize_t k, Py_ssize_t n, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t p2) except -1:
    """A packed weight of shape (p0, p1, p2) against the panels of N x K (C integers: no tuples per call)."""
    if p0 != _cdiv(n, AIO_PANEL) or p1 != k or p2 != AIO_PANEL:
        raise ValueError(f"packed has shape ({p0}, {p1}, {p2}), expected ({_cdiv(n, AIO_PANEL)}, {k}, {AIO_PANEL}) "
                         f"for N = {n}, K = {k}")
    return 0


cdef int _check_panel_io(const float[:, ::1] x, const float *out, Py_ssize_t n) except -1:
    """Refuse an out (m, n) overlapping x (m, n > 0): the panels write out while others still read x."""
    if x.shape[1] and overlap(&x[0, 0], x.shape[0] * x.shape[1] * sizeof(float), out,
                              x.shape[0] * n * sizeof(float)):
        raise ValueError("out must not overlap x")
    return 0


cdef const float[:, ::1] _unaliased(const float[:, ::1] residual, const float *out):
    """residual, or a copy where it overlaps out, its shape (m, n > 0): `out=residual` works although
    the epilogue of one block writes out while another block's may still read residual."""
    cdef Py_ssize_t size
    if residual is not None:
        size = residual.shape[0] * residual.shape[1] * sizeof(float)
        if overlap(&residual[0, 0], size, out, size):
            return residual.copy()
    return residual


cdef inline Py_ssize_t _pk_width(Py_ssize_t m) noexcept nogil:
    """Columns per block of linear_packed: one panel, two for a single row (aio_gemm_pk_f32)."""
    return 2 * AIO_PANEL if m == 1 else AIO_PANEL


cdef inline void _pk_block(const float *x, const float *packed, const float *bias, int act,
                           const float *residual, float *out, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           Py_ssize_t rows, Py_ssize_t block) noexcept nogil:
    """Block number `block` of linear_packed, epilogue included: the rows x _pk_width(m) blocks over
    out (m, n) in row-major order."""
    cdef Py_ssize_t width = _pk_width(m)
    cdef Py_ssize_t columns = _cdiv(n, width)
    cdef Py_ssize_t r0 = (block // columns) * rows, c0 = (block % columns) * width
    cdef Py_ssize_t r = min(rows, m - r0), c = min(width, n - c0), at = r0 * n + c0
    cdef const float *w = packed + c0 * k
    cdef const float *w_next = w + width * k if c0 + width < n and k else NULL
    aio_gemm_pk_f32(x + r0 * k, k, w, out + at, n, r, c, k, w_next)
    _epilogue(out + at, n, r, c, bias + c0 if bias != NULL else NULL, act,
              residual + at if residual != NULL else NULL)


def linear_packed(const float[:, ::1] x, const float[:, :, ::1] packed, Py_ssize_t n, const float[::1] bias,
                  int act, const float[:, ::1] residual, float[:, ::1] out, int n_threads):
    """out = act(x @ W^T + bias) + residual for float32 x (M, K) and W (N, K) packed in panels:
    packed (ceil(N / 64), K, 64) holds W[64 t + c, p] at [t, p, c], zero-padded. residual may be out
    itself; out must not overlap x. Threads split the blocks of PK_ROWS rows x 64 columns (128 for one row)."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], rows, blocks, block
    cdef const float *xp = NULL
    cdef const float *wp = NULL
    cdef const float *bp = NULL
    cdef const float *rp = NULL
    cdef float *op = NULL
    cdef int team
    _check_panels(k, n, packed.shape[0], packed.shape[1], packed.shape[2])
    result = output_rows(out, m, n, &op)
    check_linear(m, n, bias, act, residual, n_threads)
    if m == 0 or n == 0:
        return result
    _check_panel_io(x, op, n)
    if k:
        xp, wp = &x[0, 0], &packed[0, 0, 0]
    if bias is not None:
        bp = &bias[0]
    residual = _unaliased(residual, op)
    if residual is not None:
        rp = &residual[0, 0]
    rows = _split(m, _cdiv(m, PK_ROWS), 1)
    blocks = _cdiv(m, rows) * _cdiv(n, _pk_width(m))
    team = _team(n_threads, blocks, <double> m * n * k)
    with nogil:
        if team > 1 and m == 1:
            for block in prange(blocks, num_threads=team, schedule='static'):
                _pk_block(xp, wp, bp, act, rp, op, m, n, k, rows, block)
        elif team > 1:
            for block in prange(blocks, num_threads=team, schedule='guided'):
                _pk_block(xp, wp, bp, act, rp, op, m, n, k, rows, block)
        else:
            for block in range(blocks):
                _pk_block(xp, wp, bp, act, rp, op, m, n, k, rows, block)
    return result


cdef inline void _wq_panel(const float *x, const int8_t *packed, const float *scales, Py_ssize_t lds,
                          const float *bias, int act, const float *residual, float *out, Py_ssize_t m,
                          Py_ssize_t n, Py_ssize_t k, Py_ssize_t panel) noexcept nogil:
    """The columns of panel number `panel` of linear_int8w, epilogue included."""
    cdef Py_ssize_t c0 = panel * AIO_PANEL, c = min(<Py_ssize_t> AIO_PANEL, n - c0)
    cdef const int8_t *q = packed + c0 * k
    cdef const int8_t *q_next = q + AIO_PANEL * k if c0 + AIO_PANEL < n and k else NULL
    aio_gemm_wq_f32(x, k, q, scales + c0, lds, out + c0, n, m, c, k, q_next)
    _epilogue(out + c0, n, m, c, bias + c0 if bias != NULL else NULL, act,
              residual + c0 if residual != NULL else NULL)


def linear_int8w(const float[:, ::1] x, const int8_t[:, :, ::1] packed, const float[:, ::1] scales, Py_ssize_t n,
                 const float[::1] bias, int act, const float[:, ::1] residual, float[:, ::1] out, int n_threads):
    """out = act(x @ W^T + bias) + residual for float32 x (M, K) and the weight-only int8 W (N, K),
    W[j, p] = q[j, p] * s[p // 32, j]: packed (ceil(N / 64), K, 64) holds q[64 t + c, p] at [t, p, c]
    and scales (K / 32, 64 ceil(N / 64)) holds s, both zero-padded. residual may be out itself; out
    must not overlap x."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], panels = _cdiv(n, AIO_PANEL), panel
    cdef const float *xp = NULL
    cdef const int8_t *qp = NULL
    cdef const float *sp = NULL
    cdef const float *bp = NULL
    cdef const float *rp = NULL
    cdef float *op = NULL
    cdef int team
    if k % AIO_WQ_BLOCK:
        raise ValueError(f"K = {k} is not a multiple of the weight-only block size {AIO_WQ_BLOCK}")
    _check_panels(k, n, packed.shape[0], packed.shape[1], packed.shape[2])
    if scales.shape[0] != k // AIO_WQ_BLOCK or scales.shape[1] != panels * AIO_PANEL:
        raise ValueError(f"scales has shape ({scales.shape[0]}, {scales.shape[1]}), "
                         f"expected ({k // AIO_WQ_BLOCK}, {panels * AIO_PANEL})")
    result = output_rows(out, m, n, &op)
    check_linear(m, n, bias, act, residual, n_threads)
    if m == 0 or n == 0:
        return result
    _check_panel_io(x, op, n)
    if k:
        xp, qp, sp = &x[0, 0], &packed[0, 0, 0], &scales[0, 0]
    if bias is not None:
        bp = &bias[0]
    residual = _unaliased(residual, op)
    if residual is not None:
        rp = &residual[0, 0]
    team = _team(n_threads, panels, <double> m * n * k)
    with nogil:
        if team > 1:
            for panel in prange(panels, num_threads=team, schedule='static'):
                _wq_panel(xp, qp, sp, scales.shape[1], bp, act, rp, op, m, n, k, panel)
        else:
            for panel in range(panels):
                _wq_panel(xp, qp, sp, scales.shape[1], bp, act, rp, op, m, n, k, panel)
    return result


def instruction_set():
    """The instruction set of the float32 kernels: "avx512", "avx2" or "base" (SSE2 / NEON)."""
    return INSTRUCTION_SETS[aio_gemm_isa()]


def _use_instruction_set(name):
    """Run the float32 kernels with a lower instruction set ("auto" restores the CPU's best), so
    tests can check every variant on one machine. Not for use while kernels run."""
    isa = -1 if name == "auto" else INSTRUCTION_SETS.index(name)
    if not aio_gemm_use_isa(isa):
        raise ValueError(f"this CPU cannot run the {name} kernels")


include "attention.pxi"
