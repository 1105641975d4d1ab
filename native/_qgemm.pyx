# Quantized linear layers for aiotranslate.ops.quantized: int8 (per-row symmetric, VNNI) and bfloat16
# weights, float32 activations in and out, with the bias / activation / residual epilogue of
# ops.linear fused in.
#
# Design
# - The arithmetic, the packed weight layouts and the VNNI compensation are in qgemm_kernels.c.
#   Weights are packed once (pack_int8 / pack_bf16) into caller-owned arrays; a call quantizes (or
#   rounds to bf16) the rows of x into a scratch buffer, then computes panels of 64 output columns.
# - Threads: each member of the team gets one contiguous run of panels (int8: one kernel call, which
#   blocks rows and columns for the caches inside it; bf16: prange(schedule='static') over panels), so
#   each thread streams its part of the weight from memory once for all rows. Every output element
#   is computed the same way in any split: results are bitwise identical for every n_threads. Fewer
#   than GRAIN multiply-adds per thread run on fewer threads, down to serial. Large inputs are
#   quantized by the same team, one row block each.
# - int8_linear_static is intgemm's product for Marian's "8bit alpha" models: x quantized with a
#   fixed multiplier (qgemm_static.h), scale 1 per row, and per-column offsets / scales / bias in
#   place of the compensation terms, weight scales and bias (ops.quantized.IntgemmInput).
# - int8_block_linear is the block-scaled scheme (GGUF Q8_0: one scale per 32 values along K for the
#   weight and for x; qblock_kernels.c), threaded the same way.
# - matmul_s32, block_sums and quantize_rows / quantize_blocks expose the exact integer stages for the tests (int8 x int8 -> int32
#   against numpy), on whichever instruction set set_isa selected.
# - The linears write into out, or with out None into a new array they return (as _gemm.pyx's).

from cython.parallel cimport prange
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t
from libc.stdlib cimport free, malloc

cimport numpy as cnp

from common cimport check_linear, output_rows

cnp.import_array()  # new_output makes arrays through numpy's C API

cdef extern from "qgemm_kernels.h" nogil:
    enum:
        AIO_Q_PANEL
        AIO_ISA_AUTO
        AIO_ISA_AVX512
        AIO_ISA_AVX2
        AIO_ISA_PORTABLE
    long aio_q_padded_rows(long n)
    long aio_q8_padded_k(long k)
    long aio_bf16_padded_k(long k)
    int aio_q_isa()
    int aio_q_bf16_isa()
    int aio_q_set_isa(int isa)
    int aio_q_amx()
    int aio_q_set_amx(int on)
    void aio_q8_pack(const int8_t *q, long n, long k, int8_t *packed, int32_t *comp)
    void aio_q8_select(const int8_t *packed, long k, const int64_t *rows, long count, int8_t *out)
    void aio_q8_quantize_rows(const float *x, long ldx, long m, long k, uint8_t *xu, float *scales)
    void aio_q8_matmul_s32(const uint8_t *xu, long m, long k, const int8_t *packed, const int32_t *comp,
                           long n, int32_t *acc)
    void aio_q8_linear_cols(const uint8_t *xu, const float *xs, long m, long k, const int8_t *packed,
                            const int32_t *comp, const float *ws, const float *bias, int act,
                            const float *residual, float *out, long ldo, long c0, long c1)
    void aio_bf16_pack(const float *w, long n, long k, uint16_t *packed)
    void aio_bf16_select(const uint16_t *packed, long k, const int64_t *rows, long count, uint16_t *out)
    void aio_bf16_convert_rows(const float *x, long ldx, long m, long k, uint16_t *xb)
    void aio_bf16_linear_cols(const uint16_t *xb, long m, long k, const uint16_t *packed, const float *bias,
                              int act, const float *residual, float *out, long ldo, long c0, long c1)

cdef extern from "qblock_kernels.h" nogil:
    enum:
        AIO_QB_BLOCK
    void aio_qb_pack(const int8_t *q, long n, long k, uint8_t *packed)
    void aio_qb_quantize_rows(const float *x, long ldx, long m, long k, int8_t *xq, float *xd, int32_t *xc)
    void aio_qb_block_sums(const int8_t *xq, const int32_t *xc, long m, long k, const uint8_t *packed, long n,
                           int32_t *sums)
    void aio_qb_linear_cols(const int8_t *xq, const float *xd, const int32_t *xc, long m, long k,
                            const uint8_t *packed, const float *wd, long ldw, const float *bias, int act,
                            const float *residual, float *out, long ldo, long c0, long c1)

cdef extern from "qgemm_static.h" nogil:
    void aio_q8_quantize_rows_static(const float *x, long ldx, long m, long k, long kp, float mult, uint8_t *xu)

cdef enum:
    # Fewest multiply-adds worth one more thread. Decoding streams the weights from memory, which two
    # cores read faster than one: OPUS-MT int8 greedy at batch 1, 2 threads, 1.66 -> 1.55 ms a step
    # from 262144 (where the 512 x 512 products ran on one thread) to 32768 (alternating runs).
    GRAIN = 32768
    # Rows per block when a team quantizes the input.
    QUANT_ROWS = 64

PANEL = AIO_Q_PANEL
BLOCK = AIO_QB_BLOCK
ISAS = {"avx512": AIO_ISA_AVX512, "avx2": AIO_ISA_AVX2, "portable": AIO_ISA_PORTABLE}
_NAMES = {v: k for k, v in ISAS.items()}


def isa():
    """The instruction set of the int8 kernels now: 'avx512' (VNNI), 'avx2' or 'portable'."""
    return _NAMES[aio_q_isa()]


def bf16_isa():
    """The instruction set of the bf16 kernels now: 'avx512' (AVX512_BF16) or 'portable'."""
    return _NAMES[aio_q_bf16_isa()]


def set_isa(name):
    """Use `name` ('avx512', 'avx2', 'portable' or None: the best) where the CPU has it; returns the
    int8 set in effect. Process-wide: for tests and benchmarks, not while other threads compute."""
    return _NAMES[aio_q_set_isa(AIO_ISA_AUTO if name is None else ISAS[name])]


def amx():
    """Whether the int8 kernels run blocks of 32 rows on AMX tiles (AVX-512 set, CPU and OS allowing)."""
    return bool(aio_q_amx())


def set_amx(bint on):
    """Turn AMX off or back on (where available; reset to on by set_isa); returns the state in effect.
    Process-wide, as set_isa."""
    return bool(aio_q_set_amx(on))


def padded_rows(Py_ssize_t n):
    return aio_q_padded_rows(n)


def padded_k_int8(Py_ssize_t k):
    return aio_q8_padded_k(k)


def padded_k_bf16(Py_ssize_t k):
    return aio_bf16_padded_k(k)


cdef inline int _team(int n_threads, Py_ssize_t blocks, double work) noexcept nogil:
    cdef double by_work = work / GRAIN
    cdef Py_ssize_t t = n_threads
    if blocks < t:
        t = blocks
    if by_work < t:
        t = <Py_ssize_t> by_work
    return <int> t if t > 1 else 1


cdef int _check_packed(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t n, Py_ssize_t kp) except -1:
    if rows != aio_q_padded_rows(n) or cols != kp:
        raise ValueError(f"packed has shape ({rows}, {cols}), expected ({aio_q_padded_rows(n)}, {kp})")
    return 0


cdef const float[:, ::1] _apart(const float[:, ::1] residual, const float *out):
    """residual, or a copy of it where it is out itself: the epilogue writes out before it adds residual."""
    if residual is not None and &residual[0, 0] == out:
        return residual.copy()
    return residual


# ---- int8 ----

def pack_int8(const int8_t[:, ::1] q, int8_t[:, ::1] packed, int32_t[::1] comp):
    """Pack q (N, K) int8 into packed (padded_rows(N), padded_k_int8(K)) and comp (padded_rows(N),)."""
    cdef Py_ssize_t n = q.shape[0], k = q.shape[1]
    _check_packed(packed.shape[0], packed.shape[1], n, aio_q8_padded_k(k))
    if comp.shape[0] != packed.shape[0]:
        raise ValueError(f"comp has {comp.shape[0]} values, expected {packed.shape[0]}")
    if packed.shape[0] * packed.shape[1] == 0:
        comp[:] = 0
        return
    with nogil:
        aio_q8_pack(&q[0, 0] if n * k else NULL, n, k, &packed[0, 0], &comp[0])


def select_int8(const int8_t[:, ::1] packed, Py_ssize_t k, const int64_t[::1] rows, int8_t[:, ::1] out):
    """Rows `rows` of a packed (.., K) int8 weight as a packed weight of len(rows) rows, into out."""
    cdef Py_ssize_t count = rows.shape[0], i
    _check_packed(out.shape[0], out.shape[1], count, aio_q8_padded_k(k))
    for i in range(count):
        if not 0 <= rows[i] < packed.shape[0]:
            raise ValueError(f"row {rows[i]} is outside the {packed.shape[0]} packed rows")
    if out.shape[0] * out.shape[1] == 0:
        return
    with nogil:
        aio_q8_select(&packed[0, 0], k, &rows[0] if count else NULL, count, &out[0, 0])


cdef int _quantize(const float *x, Py_ssize_t m, Py_ssize_t k, uint8_t *xu, float *xs, int n_threads) noexcept nogil:
    """quantize_rows over m rows, split in QUANT_ROWS blocks over a team when the input is large."""
    cdef Py_ssize_t kp = aio_q8_padded_k(k), blocks = (m + QUANT_ROWS - 1) // QUANT_ROWS, b, r0
    cdef int team = _team(n_threads, blocks, <double> m * k * 16)
    if team > 1:
        for b in prange(blocks, num_threads=team, schedule='static'):
            r0 = b * QUANT_ROWS
            aio_q8_quantize_rows(x + r0 * k, k, min(QUANT_ROWS, m - r0), k, xu + r0 * kp, xs + r0)
    else:
        aio_q8_quantize_rows(x, k, m, k, xu, xs)
    return 0


def quantize_rows(const float[:, ::1] x, int8_t[:, ::1] q, float[::1] scales, float multiplier=0.0):
    """Test hook: the kernels' activation quantization into q (M, K) int8 and scales (M,): per row,
    q = rint(x * 127 / max|x|) and scales = max|x| / 127 (multiplier 0), or intgemm's PrepareA with a
    fixed multiplier, q = clamp(rint(x * multiplier), -127, 127) and scales 1."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], kp = aio_q8_padded_k(x.shape[1]), i, p
    if q.shape[0] != m or q.shape[1] != k or scales.shape[0] != m:
        raise ValueError("q must be (M, K) and scales (M,) for x (M, K)")
    if m == 0:
        return
    cdef uint8_t *xu = <uint8_t *> malloc(m * kp + 1)
    if xu == NULL:
        raise MemoryError()
    with nogil:
        if multiplier > 0:
            aio_q8_quantize_rows_static(&x[0, 0] if k else NULL, k, m, k, kp, multiplier, xu)
            for i in range(m):
                scales[i] = 1.0
        else:
            aio_q8_quantize_rows(&x[0, 0] if k else NULL, k, m, k, xu, &scales[0])
        for i in range(m):
            for p in range(k):
                q[i, p] = <int8_t> (<int> xu[i * kp + p] - 128)
    free(xu)


def matmul_s32(const int8_t[:, ::1] s, const int8_t[:, ::1] packed, const int32_t[::1] comp, Py_ssize_t n,
               int32_t[:, ::1] out):
    """Test hook: out (M, N) = s (M, K) @ q^T exactly in int32, q being the packed (N, K) weight."""
    cdef Py_ssize_t m = s.shape[0], k = s.shape[1], kp = aio_q8_padded_k(s.shape[1]), i, p
    _check_packed(packed.shape[0], packed.shape[1], n, kp)
    if out.shape[0] != m or out.shape[1] != n:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({m}, {n})")
    if m == 0 or n == 0:
        return
    cdef uint8_t *xu = <uint8_t *> malloc(m * kp + 1)
    if xu == NULL:
        raise MemoryError()
    with nogil:
        for i in range(m):
            for p in range(kp):
                xu[i * kp + p] = <uint8_t> (<int> s[i, p] + 128) if p < k else 128
        aio_q8_matmul_s32(xu, m, k, &packed[0, 0], &comp[0], n, &out[0, 0])
    free(xu)


def int8_linear(const float[:, ::1] x, const int8_t[:, ::1] packed, const int32_t[::1] comp,
                const float[::1] scales, const float[::1] bias, int act, const float[:, ::1] residual,
                float[:, ::1] out, int n_threads):
    """out = act(x @ W^T + bias) + residual with W (N, K) = scales[:, None] * q, q packed by pack_int8;
    x (M, K) quantized per row on the fly. residual may be out itself, and out may be x (x is
    quantized before out is written)."""
    return _int8_linear(x, packed, comp, scales, bias, act, residual, out, n_threads, 0.0)


def int8_linear_static(const float[:, ::1] x, float multiplier, const int8_t[:, ::1] packed,
                       const int32_t[::1] offsets, const float[::1] unquant, const float[::1] bias, int act,
                       const float[:, ::1] residual, float[:, ::1] out, int n_threads):
    """intgemm's shifted multiply with a fixed activation multiplier (qgemm_static.h):
    out = act(float(u @ q^T - offsets) * unquant + bias) + residual, u = s + 128 and
    s = clamp(rint(x * multiplier), -127, 127), for the q packed by pack_int8; offsets, unquant and
    bias are per output column. Aliasing as int8_linear."""
    if not multiplier > 0 or multiplier == float("inf"):
        raise ValueError(f"multiplier must be positive and finite, got {multiplier}")
    if offsets.shape[0] != packed.shape[0]:
        raise ValueError(f"offsets has {offsets.shape[0]} values, expected {packed.shape[0]}")
    return _int8_linear(x, packed, offsets, unquant, bias, act, residual, out, n_threads, multiplier)


cdef _int8_linear(const float[:, ::1] x, const int8_t[:, ::1] packed, const int32_t[::1] comp,
                  const float[::1] scales, const float[::1] bias, int act, const float[:, ::1] residual,
                  float[:, ::1] out, int n_threads, float multiplier):
    """Both int8 linears: x quantized per row (multiplier 0) or with the fixed multiplier (scale 1 per
    row), then the panels over a team."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], n = scales.shape[0], kp = aio_q8_padded_k(x.shape[1])
    cdef Py_ssize_t panels, chunk, p, i
    cdef const float *bp = NULL
    cdef const float *rp = NULL
    cdef float *op = NULL
    cdef int team
    _check_packed(packed.shape[0], packed.shape[1], n, kp)
    result = output_rows(out, m, n, &op)
    check_linear(m, n, bias, act, residual, n_threads)
    if m == 0 or n == 0:
        return result
    residual = _apart(residual, op)
    bp = &bias[0] if bias is not None else NULL
    rp = &residual[0, 0] if residual is not None else NULL
    cdef uint8_t *xu = <uint8_t *> malloc(m * kp + 1)
    cdef float *xs = <float *> malloc(m * sizeof(float))
    if xu == NULL or xs == NULL:
        free(xu)
        free(xs)
        raise MemoryError()
    panels = (n + AIO_Q_PANEL - 1) // AIO_Q_PANEL
    team = _team(n_threads, panels, <double> m * n * k)
    with nogil:
        if multiplier > 0:
            aio_q8_quantize_rows_static(&x[0, 0] if k else NULL, k, m, k, kp, multiplier, xu)
            for i in range(m):
                xs[i] = 1.0
        else:
            _quantize(&x[0, 0] if k else NULL, m, k, xu, xs, n_threads)
        if team > 1:
            # one contiguous run of panels per thread: the kernel blocks rows and columns inside it
            chunk = (panels + team - 1) // team
            for p in prange(team, num_threads=team, schedule='static'):
                if p * chunk < panels:
                    aio_q8_linear_cols(xu, xs, m, k, &packed[0, 0], &comp[0], &scales[0], bp, act, rp,
                                       op, n, p * chunk * AIO_Q_PANEL, min(n, (p + 1) * chunk * AIO_Q_PANEL))
        else:
            aio_q8_linear_cols(xu, xs, m, k, &packed[0, 0], &comp[0], &scales[0], bp, act, rp, op, n, 0, n)
    free(xu)
    free(xs)
    return result


# ---- int8 in blocks of 32 along K (GGUF Q8_0) ----

def _check_blocks(Py_ssize_t k):
    if k % AIO_QB_BLOCK:
        raise ValueError(f"K = {k} is not a multiple of the int8 block size {AIO_QB_BLOCK}")


def pack_int8_blocks(const int8_t[:, ::1] q, uint8_t[:, ::1] packed):
    """Pack q (N, K) int8, K a multiple of 32, into packed (padded_rows(N), K) as q + 128."""
    cdef Py_ssize_t n = q.shape[0], k = q.shape[1]
    _check_blocks(k)
    _check_packed(packed.shape[0], packed.shape[1], n, k)
    if packed.shape[0] * packed.shape[1] == 0:
        return
    with nogil:
        aio_qb_pack(&q[0, 0] if n * k else NULL, n, k, &packed[0, 0])


def quantize_blocks(const float[:, ::1] x, int8_t[:, ::1] q, float[:, ::1] scales):
    """Test hook: the kernels' activation quantization per block of 32 into q (M, K) and scales
    (M, K/32): q = rint(x * (127 / max|block|)), scales = max|block| / 127."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1]
    _check_blocks(k)
    if q.shape[0] != m or q.shape[1] != k or scales.shape[0] != m or scales.shape[1] != k // AIO_QB_BLOCK:
        raise ValueError("q must be (M, K) and scales (M, K/32) for x (M, K)")
    if m * k == 0:
        return
    cdef int32_t *xc = <int32_t *> malloc(m * (k // AIO_QB_BLOCK) * sizeof(int32_t))
    if xc == NULL:
        raise MemoryError()
    with nogil:
        aio_qb_quantize_rows(&x[0, 0], k, m, k, &q[0, 0], &scales[0, 0], xc)
    free(xc)


def block_sums(const int8_t[:, ::1] s, const uint8_t[:, ::1] packed, Py_ssize_t n, int32_t[:, :, ::1] out):
    """Test hook: out (M, N, K/32) = the exact int32 dot products of each block of 32 of s (M, K)
    with the packed (N, K) weight's, as the kernels of the current instruction set compute them."""
    cdef Py_ssize_t m = s.shape[0], k = s.shape[1], nb = s.shape[1] // AIO_QB_BLOCK, i, b, t
    _check_blocks(k)
    _check_packed(packed.shape[0], packed.shape[1], n, k)
    if out.shape[0] != m or out.shape[1] != n or out.shape[2] != nb:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}, {out.shape[2]}), expected ({m}, {n}, {nb})")
    if m * n * nb == 0:
        return
    cdef int32_t *xc = <int32_t *> malloc(m * nb * sizeof(int32_t))
    if xc == NULL:
        raise MemoryError()
    cdef int32_t total
    with nogil:
        for i in range(m):
            for b in range(nb):
                total = 0
                for t in range(AIO_QB_BLOCK):
                    total = total + s[i, b * AIO_QB_BLOCK + t]
                xc[i * nb + b] = 128 * total
        aio_qb_block_sums(&s[0, 0], xc, m, k, &packed[0, 0], n, &out[0, 0, 0])
    free(xc)


def int8_block_linear(const float[:, ::1] x, const uint8_t[:, ::1] packed, const float[:, ::1] scales,
                      Py_ssize_t n, const float[::1] bias, int act, const float[:, ::1] residual, float[:, ::1] out,
                      int n_threads):
    """out = act(x @ W^T + bias) + residual for W (N, K) = q * scales per block of 32 along K, q packed
    by pack_int8_blocks and scales (K/32, padded_rows(N)) (block b of row j at [b, j]); x (M, K) is
    quantized per block of 32 on the fly. residual may be out itself, and out may be x."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], nb = x.shape[1] // AIO_QB_BLOCK, panels, chunk, p
    cdef const float *bp = NULL
    cdef const float *rp = NULL
    cdef float *op = NULL
    cdef int team
    _check_blocks(k)
    _check_packed(packed.shape[0], packed.shape[1], n, k)
    if scales.shape[0] != nb or scales.shape[1] != packed.shape[0]:
        raise ValueError(f"scales has shape ({scales.shape[0]}, {scales.shape[1]}), expected ({nb}, {packed.shape[0]})")
    result = output_rows(out, m, n, &op)
    check_linear(m, n, bias, act, residual, n_threads)
    if m == 0 or n == 0:
        return result
    residual = _apart(residual, op)
    bp = &bias[0] if bias is not None else NULL
    rp = &residual[0, 0] if residual is not None else NULL
    cdef int8_t *xq = <int8_t *> malloc(m * k + 1)
    cdef float *xd = <float *> malloc((m * nb + 1) * sizeof(float))
    cdef int32_t *xc = <int32_t *> malloc((m * nb + 1) * sizeof(int32_t))
    if xq == NULL or xd == NULL or xc == NULL:
        free(xq)
        free(xd)
        free(xc)
        raise MemoryError()
    panels = (n + AIO_Q_PANEL - 1) // AIO_Q_PANEL
    team = _team(n_threads, panels, <double> m * n * k)
    with nogil:
        aio_qb_quantize_rows(&x[0, 0] if k else NULL, k, m, k, xq, xd, xc)
        if team > 1:
            chunk = (panels + team - 1) // team  # one contiguous run of panels per thread
            for p in prange(team, num_threads=team, schedule='static'):
                if p * chunk < panels:
                    aio_qb_linear_cols(xq, xd, xc, m, k, &packed[0, 0], &scales[0, 0] if nb else NULL,
                                       scales.shape[1], bp, act, rp, op, n, p * chunk * AIO_Q_PANEL,
                                       min(n, (p + 1) * chunk * AIO_Q_PANEL))
        else:
            aio_qb_linear_cols(xq, xd, xc, m, k, &packed[0, 0], &scales[0, 0] if nb else NULL, scales.shape[1],
                               bp, act, rp, op, n, 0, n)
    free(xq)
    free(xd)
    free(xc)
    return result


# ---- bfloat16 ----

def pack_bf16(const float[:, ::1] w, uint16_t[:, ::1] packed):
    """Round w (N, K) to bf16 (nearest even) into packed (padded_rows(N), padded_k_bf16(K))."""
    cdef Py_ssize_t n = w.shape[0], k = w.shape[1]
    _check_packed(packed.shape[0], packed.shape[1], n, aio_bf16_padded_k(k))
    if packed.shape[0] * packed.shape[1] == 0:
        return
    with nogil:
        aio_bf16_pack(&w[0, 0] if n * k else NULL, n, k, &packed[0, 0])


def select_bf16(const uint16_t[:, ::1] packed, Py_ssize_t k, const int64_t[::1] rows, uint16_t[:, ::1] out):
    """Rows `rows` of a packed (.., K) bf16 weight as a packed weight of len(rows) rows, into out."""
    cdef Py_ssize_t count = rows.shape[0], i
    _check_packed(out.shape[0], out.shape[1], count, aio_bf16_padded_k(k))
    for i in range(count):
        if not 0 <= rows[i] < packed.shape[0]:
            raise ValueError(f"row {rows[i]} is outside the {packed.shape[0]} packed rows")
    if out.shape[0] * out.shape[1] == 0:
        return
    with nogil:
        aio_bf16_select(&packed[0, 0], k, &rows[0] if count else NULL, count, &out[0, 0])


def bf16_linear(const float[:, ::1] x, const uint16_t[:, ::1] packed, Py_ssize_t n, const float[::1] bias,
                int act, const float[:, ::1] residual, float[:, ::1] out, int n_threads):
    """out = act(bf16(x) @ W^T + bias) + residual for the (N, K) weight W packed by pack_bf16,
    products accumulated in float32. residual may be out itself, and out may be x."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], kp = aio_bf16_padded_k(x.shape[1]), panels, p
    cdef const float *bp = NULL
    cdef const float *rp = NULL
    cdef float *op = NULL
    cdef int team
    _check_packed(packed.shape[0], packed.shape[1], n, kp)
    result = output_rows(out, m, n, &op)
    check_linear(m, n, bias, act, residual, n_threads)
    if m == 0 or n == 0:
        return result
    residual = _apart(residual, op)
    bp = &bias[0] if bias is not None else NULL
    rp = &residual[0, 0] if residual is not None else NULL
    cdef uint16_t *xb = <uint16_t *> malloc((m * kp + 1) * sizeof(uint16_t))
    if xb == NULL:
        raise MemoryError()
    panels = (n + AIO_Q_PANEL - 1) // AIO_Q_PANEL
    team = _team(n_threads, panels, <double> m * n * k / 2)
    with nogil:
        aio_bf16_convert_rows(&x[0, 0] if k else NULL, k, m, k, xb)
        if team > 1:
            for p in prange(panels, num_threads=team, schedule='static'):
                aio_bf16_linear_cols(xb, m, k, &packed[0, 0], bp, act, rp, op, n, p * AIO_Q_PANEL,
                                     min(n, (p + 1) * AIO_Q_PANEL))
        else:
            aio_bf16_linear_cols(xb, m, k, &packed[0, 0], bp, act, rp, op, n, 0, n)
    free(xb)
    return result
