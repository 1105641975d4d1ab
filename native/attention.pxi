# Fused scaled dot-product attention for aiotranslate.ops.attention: out = softmax(scale q k^T) v over G
# independent groups (batch x KV heads), masked by lengths and causal_q as the softmax kernel masks.
# Included in _gemm.pyx: one module, so the GEMM kernels it calls follow the instruction set that
# `_use_instruction_set` picks (tests run it on every set).
#
# Design
# - Per group, query rows in even blocks of at most ATTENTION_ROWS: the block's scores (rows x visible
#   keys) go to a per-thread scratch that stays in L2, then softmax in place, then p @ v into out. The three steps
#   are the kernels of batched_matmul and softmax (gemm_kernels.c, softmax_kernels.c, compiled into
#   _gemm), called on pointers: no probabilities in memory beyond the scratch, no op calls
#   between the steps. The blocks are even so that none is too short for the path batched_matmul
#   takes on all M rows: each element is computed exactly as the unfused ops compute it (up to
#   M = 256 with N > 128, where batched_matmul hands p @ v to BLAS).
# - Only the keys some row of the block sees are read: a block stops at its largest visible prefix
#   (padded rows of a batch, the future of a causal block), so masked keys never touch the result.
# - Threads split the groups (prange, static); a group is one thread's, so results do not depend on
#   n_threads.
# - Inputs are read in place through their outer strides (KV-cache slices); out is C-contiguous.
# float32 only: ops.attention runs float64 (and CuPy arrays) as the composition of the ops.
# Measured against that composition (1 thread, D = 64, interleaved, a shared 2-core VM; us per call):
#   decode, G = 256, M = 1:   N = 16: 111 vs 140,  N = 32: 222 vs 259,  N = 64: 441 vs 457
#   the calls of an OPUS-MT batch-32 greedy decode, replayed: 300 vs 350 from L3, 560 vs 595 cold;
#     decoding attention is memory time (a software prefetch of the next group gained nothing)
#   encoder, G = 256, M = N = 25: 1224 vs 1280;  GQA-like G = 64, M = 4, N = 128: 233 vs 263
#   causal prefill, G = 12, M = N = 512: 5.1 vs 14.4 ms;  G = 4, M = N = 2048: 22 vs 79 ms
# The composition won nowhere, so every shape runs fused.

cdef extern from "softmax_kernels.h" nogil:
    void aio_softmax_row_f32(const float *x, const float *mask, float *out, long n, long limit,
                             double scale, int log_space)

cdef enum:
    ATTENTION_ROWS = 64  # query rows per block: 64 x 2048 scores are 512 KiB, within L2
    # Fewest q k^T multiply-adds worth a team, 8x below the row kernels' PARALLEL_GRAIN: a decoding
    # step's keys and values come from memory, not cache (weights stream between its attention calls).
    # OPUS-MT int8 greedy at batch 1 (8 heads, 25-32 keys), 2 threads: 1.65 -> 1.58 ms a step; from
    # cache, G = 8, N = 8..32, D = 64: 3.4-4.2 us a call against 3.7-4.8 on one thread.
    ATTENTION_GRAIN = 4096


cdef void attend_group(const float *q, Py_ssize_t ldq, const float *k, Py_ssize_t ldk, const float *v,
                       Py_ssize_t ldv, float *out, Py_ssize_t m, Py_ssize_t n, Py_ssize_t d, double scale,
                       Py_ssize_t row0, const int *lengths, Py_ssize_t rows_per_length, Py_ssize_t causal_q,
                       float *scores) noexcept nogil:
    """out (m, d) of the group whose first query row is row0 of all G * m rows (the masking index)."""
    cdef Py_ssize_t blocks = (m + ATTENTION_ROWS - 1) // ATTENTION_ROWS, block, i0, i, mb, keys, limit
    for block in range(blocks):
        i0 = block * m // blocks
        mb = (block + 1) * m // blocks - i0
        keys = 0  # keys seen by some row of the block
        for i in range(mb):
            keys = max(keys, visible_columns(row0 + i0 + i, n, lengths, rows_per_length, causal_q))
        if keys == 0:  # nothing visible: an empty softmax, zero context
            for i in range(mb * d):
                out[i0 * d + i] = 0
        else:
            aio_gemm_nt_f32(q + i0 * ldq, ldq, k, ldk, scores, keys, mb, keys, d, 1, NULL, 0)
            for i in range(mb):
                limit = visible_columns(row0 + i0 + i, n, lengths, rows_per_length, causal_q)
                aio_softmax_row_f32(scores + i * keys, NULL, scores + i * keys, keys, limit, scale, 0)
            aio_gemm_nn_f32(scores, keys, v, ldv, out + i0 * d, d, mb, d, keys, 1)


cdef inline Py_ssize_t extent(Py_ssize_t g, Py_ssize_t s0, Py_ssize_t rows, Py_ssize_t s1,
                              Py_ssize_t d) noexcept nogil:
    """Elements from the first of a strided (g, rows, d) view to the end of its last."""
    return (g - 1) * s0 + (rows - 1) * s1 + d


def attention(const float[:, :, :] q, const float[:, :, :] k, const float[:, :, :] v, float[:, :, ::1] out,
              double scale, const int[::1] lengths, int causal_q, int n_threads):
    """out[g] = softmax(scale * q[g] @ k[g].T, masked) @ v[g] for q (G, M, D), k and v (G, N, D) with
    a contiguous last axis (outer axes may be strided), out (G, M, D) apart from them or None (into a
    new array, returned); lengths (L,) with L dividing G * M, or None, and causal_q (0: off) mask row
    r = g * M + i of the scores as ops.softmax masks row r of its input."""
    cdef Py_ssize_t g = q.shape[0], m = q.shape[1], d = q.shape[2], n = k.shape[1], item = sizeof(float)
    cdef Py_ssize_t rows_per_length = 1, i
    cdef const int *lengths_ptr = NULL
    cdef float *op = NULL
    cdef void *new_data
    cdef cnp.npy_intp dims[3]
    if k.shape[0] != g or v.shape[0] != g or k.shape[2] != d or v.shape[2] != d or v.shape[1] != n:
        raise ValueError(f"q {tuple(q.shape)[:3]}, k {tuple(k.shape)[:3]} and v {tuple(v.shape)[:3]} do not fit "
                         f"(G, M, D), (G, N, D), (G, N, D)")
    result = None
    if out is None:
        dims[0], dims[1], dims[2] = g, m, d
        result = new_output(3, dims, cnp.NPY_FLOAT32, &new_data)
        op = <float *> new_data
    elif out.shape[0] != g or out.shape[1] != m or out.shape[2] != d:
        raise ValueError(f"out has shape {tuple(out.shape)[:3]}, expected {(g, m, d)}")
    elif g * m * d:
        op = &out[0, 0, 0]
    check_threads(n_threads)
    if lengths is not None:
        if lengths.shape[0] == 0 or (g * m) % lengths.shape[0]:
            raise ValueError(f"{lengths.shape[0]} lengths do not divide {g * m} rows")
        rows_per_length = g * m // lengths.shape[0]
        lengths_ptr = &lengths[0]
    if causal_q < 0 or (causal_q and ((g * m) % causal_q or causal_q > n)):
        raise ValueError(f"causal_q={causal_q} must divide the {g * m} rows and be <= {n} keys")
    if g == 0 or m == 0 or d == 0:
        return result
    if n == 0:  # no keys: every row's softmax is empty
        memset(op, 0, g * m * d * item)
        return result
    if d > 1 and (q.strides[2] != item or k.strides[2] != item or v.strides[2] != item):
        raise ValueError("q, k and v need a contiguous last axis (outer axes may be strided)")
    # Element strides of the outer axes (a KV-cache slice keeps the cache's row stride).
    cdef Py_ssize_t sq = q.strides[0] // item, ldq = q.strides[1] // item
    cdef Py_ssize_t sk = k.strides[0] // item, ldk = k.strides[1] // item
    cdef Py_ssize_t sv = v.strides[0] // item, ldv = v.strides[1] // item
    cdef const float *qp = &q[0, 0, 0]
    cdef const float *kp = &k[0, 0, 0]
    cdef const float *vp = &v[0, 0, 0]
    cdef Py_ssize_t out_bytes = g * m * d * item
    if (overlap(qp, extent(g, sq, m, ldq, d) * item, op, out_bytes)
            or overlap(kp, extent(g, sk, n, ldk, d) * item, op, out_bytes)
            or overlap(vp, extent(g, sv, n, ldv, d) * item, op, out_bytes)):
        raise ValueError("out must not overlap q, k or v")
    cdef int team = n_threads if g > 1 and g * m * n * d >= ATTENTION_GRAIN else 1
    cdef Py_ssize_t per_thread = min(m, <Py_ssize_t>ATTENTION_ROWS) * n
    cdef float *sp = <float *> malloc(team * per_thread * item)
    if sp == NULL:
        raise MemoryError()
    with nogil:
        if team > 1:
            for i in prange(g, num_threads=team, schedule='static'):
                attend_group(qp + i * sq, ldq, kp + i * sk, ldk, vp + i * sv, ldv, op + i * m * d, m, n, d, scale,
                             i * m, lengths_ptr, rows_per_length, causal_q, sp + threadid() * per_thread)
        else:  # no parallel region: entering one costs about as much as a decoding step's heads
            for i in range(g):
                attend_group(qp + i * sq, ldq, kp + i * sk, ldk, vp + i * sv, ldv, op + i * m * d, m, n, d, scale,
                             i * m, lengths_ptr, rows_per_length, causal_q, sp)
    free(sp)
    return result
