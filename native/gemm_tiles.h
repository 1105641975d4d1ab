/* The small-M GEMM kernels for one vector width: included by gemm_kernels.c once per instruction set,
 * after defining
 *   ISA(name)   the name with the instruction set's suffix (name_avx512, ...)
 *   ISA_TARGET  its GCC target attribute, or nothing
 *   VL          floats per vector (16, 8 or 4)
 *   NACC        vector accumulators per tile (a multiple of VL that fits the register file)
 *   NT_MB, NT_NB  the NT tile: a-rows x b-rows (NT_MB * NT_NB <= NACC); one or two a-rows get
 *               NACC / 2 b-rows per tile instead
 *   NN_NV       vectors (of VL columns) per NN tile row; NN tiles have 4 rows (4 * NN_NV <= NACC)
 *   OP_MR, OP_NV  the outer-product NT tile: up to OP_MR (6 or 8) a-rows x OP_NV vectors of packed b
 *               columns (OP_MR * OP_NV accumulators, plus OP_NV b vectors, in the registers)
 *   OP_NR       OP_NV * VL, the columns of a panel packed on the fly
 *   OP_PACK_NT  defined where plain NT (and weight-only int8 with many rows) packs b on the fly for
 *               the outer-product tiles; packed weights (ISA(gemm_pk)) use them in every build
 *   PK_NV, PK_PANELS  one row against packed weights (pk_row): strips of PK_NV vectors, in PK_PANELS
 *               (1 or 2) panels at a time (2 * PK_NV <= NACC accumulators when 2)
 *   WQ_MR, WQ_NV  the weight-only int8 tile (gemm_wq_tiles.h, included at the end)
 * See gemm_kernels.c for the design. Each inclusion defines static ISA(gemm_nt), ISA(gemm_nn),
 * ISA(gemm_pk) and ISA(gemm_wq).
 */
typedef float ISA(vec) __attribute__((vector_size(VL * sizeof(float))));
typedef float ISA(vecu) __attribute__((vector_size(VL * sizeof(float)), aligned(sizeof(float))));
#define V ISA(vec)
#define OP_NR (OP_NV * VL)
#define INLINE static inline __attribute__((always_inline)) ISA_TARGET

/* Shuffles pairing the blocks of h lanes of x and y: LOh takes the even blocks of both, HIh the odd
 * ones, as x, y, x, y, ... Each level of a transpose or of a transpose-reduce uses one h. The sum
 * of reduce's input v lands in lane BITREV[v]. */
#if VL == 16
#define LO8(x, y) __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
#define HI8(x, y) __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31)
#define LO4(x, y) __builtin_shufflevector(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27)
#define HI4(x, y) __builtin_shufflevector(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31)
#define LO2(x, y) __builtin_shufflevector(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29)
#define HI2(x, y) __builtin_shufflevector(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31)
#define LO1(x, y) __builtin_shufflevector(x, y, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30)
#define HI1(x, y) __builtin_shufflevector(x, y, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31)
#define BITREV {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15}
#elif VL == 8
#define LO4(x, y) __builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11)
#define HI4(x, y) __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15)
#define LO2(x, y) __builtin_shufflevector(x, y, 0, 1, 8, 9, 4, 5, 12, 13)
#define HI2(x, y) __builtin_shufflevector(x, y, 2, 3, 10, 11, 6, 7, 14, 15)
#define LO1(x, y) __builtin_shufflevector(x, y, 0, 8, 2, 10, 4, 12, 6, 14)
#define HI1(x, y) __builtin_shufflevector(x, y, 1, 9, 3, 11, 5, 13, 7, 15)
#define BITREV {0, 4, 2, 6, 1, 5, 3, 7}
#elif VL == 4
#define LO2(x, y) __builtin_shufflevector(x, y, 0, 1, 4, 5)
#define HI2(x, y) __builtin_shufflevector(x, y, 2, 3, 6, 7)
#define LO1(x, y) __builtin_shufflevector(x, y, 0, 4, 2, 6)
#define HI1(x, y) __builtin_shufflevector(x, y, 1, 5, 3, 7)
#define BITREV {0, 2, 1, 3}
#else
#error "VL must be 16, 8 or 4"
#endif

INLINE V ISA(load)(const float *p) {
    V v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A load GCC cannot repeat: the value stays in a register for all the FMAs of a tile instead of
 * being folded into each of them, which doubles the loads of the one- to three-row tiles. */
INLINE V ISA(load_once)(const float *p) { return *(const volatile ISA(vecu) *)p; }

/* The first r < VL floats at p, zero-filled. */
INLINE V ISA(load_part)(const float *p, long r) {
    V v = {0};
    memcpy(&v, p, r * sizeof(float));
    return v;
}

/* Sums of VL vectors in VL - 1 vector adds, in natural lane order: feeding input BITREV[v] at
 * position v puts its sum in lane v. Every input goes through the same addition tree. */
#define REDUCE_LEVEL(LO, HI)                                                                       \
    n /= 2;                                                                                        \
    for (int i = 0; i < n; i++) r[i] = LO(r[2 * i], r[2 * i + 1]) + HI(r[2 * i], r[2 * i + 1]);

INLINE V ISA(reduce)(const V *acc) {
    static const unsigned char bitrev[VL] = BITREV;
    V r[VL];
    int n = VL;
    for (int v = 0; v < VL; v++) r[v] = acc[bitrev[v]];
#if VL == 16
    REDUCE_LEVEL(LO8, HI8)
#endif
#if VL >= 8
    REDUCE_LEVEL(LO4, HI4)
#endif
    REDUCE_LEVEL(LO2, HI2)
    REDUCE_LEVEL(LO1, HI1)
    return r[0];
}

/* dst[p * ldd + j] = src[j * lds + p] for j, p < VL: each level pairs rows i and i + h. */
#define TRANSPOSE_LEVEL(h, LO, HI)                                                                  \
    for (int g = 0; g < VL; g += 2 * h)                                                            \
        for (int i = g; i < g + h; i++) {                                                          \
            V x = r[i], y = r[i + h];                                                               \
            r[i] = LO(x, y);                                                                        \
            r[i + h] = HI(x, y);                                                                    \
        }

INLINE void ISA(transpose)(const float *src, long lds, float *dst, long ldd) {
    V r[VL];
    for (int i = 0; i < VL; i++) r[i] = ISA(load)(src + i * lds);
#if VL == 16
    TRANSPOSE_LEVEL(8, LO8, HI8)
#endif
#if VL >= 8
    TRANSPOSE_LEVEL(4, LO4, HI4)
#endif
    TRANSPOSE_LEVEL(2, LO2, HI2)
    TRANSPOSE_LEVEL(1, LO1, HI1)
    for (int i = 0; i < VL; i++) memcpy(dst + i * ldd, &r[i], sizeof r[i]);
}

/* bt (k, ldd) = the first w <= ldd rows of b (w, k), transposed, zero-padded to wpad >= w columns
 * (whole vectors) so that the kernels can load them in full. */
INLINE void ISA(pack_transposed)(const float *b, long ldb, long w, long k, float *bt, long ldd, long wpad) {
    long wv = w - w % VL, kv = k - k % VL;
    for (long j = 0; j < wv; j += VL)
        for (long p = 0; p < kv; p += VL) ISA(transpose)(b + j * ldb + p, ldb, bt + p * ldd + j, ldd);
    for (long p = 0; p < k; p++) {
        for (long j = p < kv ? wv : 0; j < w; j++) bt[p * ldd + j] = b[j * ldb + p];
        for (long j = w; j < wpad; j++) bt[p * ldd + j] = 0.0f;
    }
}

/* NT: c[i, j] for i < mb, j < nb (mb * nb <= NACC); inlined with constant sizes, fully unrolled.
 * Accumulator i * nb + j holds VL partial sums of row i of a times row j of b. With one row each b
 * vector feeds one FMA, which takes it as its memory operand (load, not load_once: M = 1 products
 * 2-3.5% faster in cache, C loop alternating with the load_once build). */
INLINE void ISA(nt_tile)(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long k,
                         float alpha, int mb, int nb) {
    V acc[NACC] = {0};
    long p = 0;
    for (; p + VL <= k; p += VL) {
        V bv[NACC];
        for (int j = 0; j < nb; j++) {
            bv[j] = mb == 1 ? ISA(load)(b + j * ldb + p) : ISA(load_once)(b + j * ldb + p);
            if (mb > 1) __builtin_prefetch(b + (j + nb) * ldb + p); /* the next tile's row j; never faults */
        }
        for (int i = 0; i < mb; i++) {
            V av = ISA(load)(a + i * lda + p);
            for (int j = 0; j < nb; j++) acc[i * nb + j] += av * bv[j];
        }
    }
    if (p < k) { /* the k % VL tail as one more step on zero-padded vectors */
        V bv[NACC];
        for (int j = 0; j < nb; j++) bv[j] = ISA(load_part)(b + j * ldb + p, k - p);
        for (int i = 0; i < mb; i++) {
            V av = ISA(load_part)(a + i * lda + p, k - p);
            for (int j = 0; j < nb; j++) acc[i * nb + j] += av * bv[j];
        }
    }
    float s[NACC];
    for (int g = 0; g < mb * nb; g += VL) {
        V sums = alpha * ISA(reduce)(acc + g);
        memcpy(s + g, &sums, sizeof sums);
    }
    for (int i = 0; i < mb; i++) memcpy(c + i * ldc, s + i * nb, nb * sizeof(float));
}

#ifdef NT_SHIFTED
/* One k-step of nt_row_shifted: lanes of mask only (the others add 0 * 0, which changes no sum). */
INLINE void ISA(nt_row_step)(V *acc, const float *a, const float *b, long ldb, int nb, __mmask16 mask) {
    V av = (V)_mm512_maskz_loadu_ps(mask, a);
    for (int j = 0; j < nb; j++) acc[j] += av * (V)_mm512_maskz_load_ps(mask, b + j * ldb);
}

/* One row of a against nb rows of b that all start s floats (0 < s < VL) past a cache line: nt_tile's
 * sums with every load of b a whole line. The steps run over p - s: lane l sums the products of
 * p = l - s mod VL, in p order, from +0 (masked lanes add 0 * 0 at either end), so the lanes hold
 * nt_tile's chains rotated by s. reduce's tree adds lane l to lane l + VL/2, then l + VL/4, ...: the
 * same pairs of chains under any rotation, and addition commutes, so the sums are nt_tile's bit for
 * bit and a row's result does not depend on where b lies.
 * Against nt_tile on the same rows 16 bytes past a line (the M = 1 shapes of benchmarks/kernels.py,
 * 1 thread, in cache; native calls, alternating): 6-17% faster, as fast as on aligned rows. */
INLINE void ISA(nt_row_shifted)(const float *a, const float *b, long ldb, float *c, long k, float alpha, long s,
                                int nb) {
    V acc[NACC] = {0};
    const float *a0 = a - s, *b0 = b - s;
    long end = k + s, p = VL;
    __mmask16 first = (__mmask16)(0xFFFFu << s);
    if (end < VL) first &= (__mmask16)((1u << end) - 1);
    ISA(nt_row_step)(acc, a0, b0, ldb, nb, first);
    for (; p + VL <= end; p += VL) {
        V av = ISA(load)(a0 + p);
        for (int j = 0; j < nb; j++) acc[j] += av * ISA(load)(b0 + j * ldb + p);
    }
    if (p < end) ISA(nt_row_step)(acc, a0 + p, b0 + p, ldb, nb, (__mmask16)((1u << (end - p)) - 1));
    V sums = alpha * ISA(reduce)(acc);
    memcpy(c, &sums, nb * sizeof(float));
}
#endif

/* NT columns [j, n) in blocks of NB, all m rows in blocks of MB (the rows left over when MB is
 * NT_MB get a narrower tile); returns the first column not done. */
INLINE long ISA(nt_columns)(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long m,
                            long j, long n, long k, float alpha, int MB, int NB) {
    for (; j + NB <= n; j += NB) {
        long i = 0;
        for (; i + MB <= m; i += MB)
            ISA(nt_tile)(a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc, k, alpha, MB, NB);
        if (MB != NT_MB || i == m) continue;
        const float *ai = a + i * lda, *bj = b + j * ldb;
        float *cij = c + i * ldc + j;
        switch (m - i) {
        case 1: ISA(nt_tile)(ai, lda, bj, ldb, cij, ldc, k, alpha, 1, NB); break;
        case 2: ISA(nt_tile)(ai, lda, bj, ldb, cij, ldc, k, alpha, 2, NB); break;
        default: ISA(nt_tile)(ai, lda, bj, ldb, cij, ldc, k, alpha, 3, NB); break;
        }
    }
    return j;
}

/* NN: c[i, VL v + l] for i < mb, v < nv, l < VL (mb <= 4, nv <= NN_NV), but only l < r in the last
 * vector, whose b rows are read in full when `padded`. Each lane is one chain of FMAs over p. */
INLINE void ISA(nn_tile)(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long k,
                         float alpha, int mb, int nv, int r, int padded) {
    V acc[NACC] = {0};
    for (long p = 0; p < k; p++) {
        V bv[NN_NV];
        for (int v = 0; v < nv; v++) {
            const float *bp = b + p * ldb + VL * v;
            bv[v] = v == nv - 1 && r < VL && !padded ? ISA(load_part)(bp, r) : ISA(load_once)(bp);
            __builtin_prefetch(bp + NN_PREFETCH * ldb); /* never faults */
        }
        for (int i = 0; i < mb; i++) {
            float ai = a[i * lda + p];
            for (int v = 0; v < nv; v++) acc[i * nv + v] += ai * bv[v];
        }
    }
    for (int i = 0; i < mb; i++)
        for (int v = 0; v < nv; v++) {
            V out = alpha * acc[i * nv + v];
            memcpy(c + i * ldc + VL * v, &out, (v == nv - 1 ? r : VL) * sizeof(float));
        }
}

/* NN: all m rows, in blocks of 4, of one block of nv column vectors (r columns in the last). */
INLINE void ISA(nn_rows)(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long m,
                         long k, float alpha, int nv, int r, int padded) {
    long i = 0;
    if (nv == 1) /* one vector per row: 8 rows keep 8 FMA chains in flight instead of 4 */
        for (; i + 8 <= m; i += 8)
            ISA(nn_tile)(a + i * lda, lda, b, ldb, c + i * ldc, ldc, k, alpha, 8, 1, r, padded);
    for (; i + 4 <= m; i += 4)
        ISA(nn_tile)(a + i * lda, lda, b, ldb, c + i * ldc, ldc, k, alpha, 4, nv, r, padded);
    const float *ai = a + i * lda;
    float *ci = c + i * ldc;
    switch (m - i) {
    case 0: break;
    case 1: ISA(nn_tile)(ai, lda, b, ldb, ci, ldc, k, alpha, 1, nv, r, padded); break;
    case 2: ISA(nn_tile)(ai, lda, b, ldb, ci, ldc, k, alpha, 2, nv, r, padded); break;
    default: ISA(nn_tile)(ai, lda, b, ldb, ci, ldc, k, alpha, 3, nv, r, padded); break;
    }
}

/* NN columns in blocks of NN_NV vectors, then single vectors, then the n % VL left: zero-padded in
 * registers, or read in full from b when its rows are `padded` to whole vectors. */
INLINE void ISA(nn_all_columns)(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                long m, long n, long k, float alpha, int padded) {
    long j = 0;
    for (; j + VL * NN_NV <= n; j += VL * NN_NV)
        ISA(nn_rows)(a, lda, b + j, ldb, c + j, ldc, m, k, alpha, NN_NV, VL, 0);
    for (; j + VL <= n; j += VL) ISA(nn_rows)(a, lda, b + j, ldb, c + j, ldc, m, k, alpha, 1, VL, 0);
    if (j < n) ISA(nn_rows)(a, lda, b + j, ldb, c + j, ldc, m, k, alpha, 1, (int)(n - j), padded);
}

/* The columns of vector v in a tile w columns wide: VL, or fewer in the last one. */
INLINE long ISA(lanes)(long w, int v) { return w - VL * v < VL ? w - VL * v : VL; }

/* Outer-product NT tile: c[i, j] += sum_p a[i, p] b[j, p] for i < mb, j < w (w > VL * (nv - 1)),
 * c taken as 0 if `first`, from kw steps of a k-major panel bp[p * ldp + j] = b[j, p]: per step,
 * nv vector loads of bp and mb broadcasts of a feed mb * nv FMAs, with no reduction. Each element
 * is one FMA chain in p order, whatever tile it falls in. */
INLINE void ISA(op_tile)(const float *a, long lda, const float *bp, long ldp, float *c, long ldc, long kw,
                         long w, int first, struct prefetch *pf, int mb, int nv) {
    V acc[OP_MR * OP_NV];
    for (int i = 0; i < mb; i++)
        for (int v = 0; v < nv; v++)
            acc[i * OP_NV + v] = first ? (V){0} : ISA(load_part)(c + i * ldc + VL * v, ISA(lanes)(w, v));
    for (long p = 0; p < kw; p++) {
        V bv[OP_NV];
        for (int v = 0; v < nv; v++) bv[v] = ISA(load)(bp + p * ldp + VL * v);
        for (int i = 0; i < mb; i++) {
            float ai = a[i * lda + p];
            for (int v = 0; v < nv; v++) acc[i * OP_NV + v] += ai * bv[v];
        }
        prefetch_step(pf);
    }
    for (int i = 0; i < mb; i++)
        for (int v = 0; v < nv; v++)
            memcpy(c + i * ldc + VL * v, &acc[i * OP_NV + v], ISA(lanes)(w, v) * sizeof(float));
}

/* op_tile with its run-time sizes turned into constants for the unrolling: mb <= OP_MR rows, nv
 * vectors, and w = OP_NR columns but in the last, narrower panel (whose partial vector is loaded and
 * stored through the stack; a constant w makes those plain vector moves). */
INLINE void ISA(op_tile_sized)(const float *a, long lda, const float *bp, long ldp, float *c, long ldc, long kw,
                               long w, int first, struct prefetch *pf, int mb, int nv) {
#define OP_TILE(MB, NV, W)                                                                         \
    ISA(op_tile)(a, lda, bp, ldp, c, ldc, kw, W, first, pf, MB, (NV) < OP_NV ? (NV) : OP_NV)
#define OP_NVS(MB)                                                                                 \
    case MB:                                                                                       \
        if (w == OP_NR) OP_TILE(MB, OP_NV, OP_NR);                                                 \
        else if (nv >= OP_NV) OP_TILE(MB, OP_NV, w);                                               \
        else if (nv == 1) OP_TILE(MB, 1, w);                                                       \
        else if (nv == 2) OP_TILE(MB, 2, w);                                                       \
        else OP_TILE(MB, 3, w);                                                                    \
        return;
    switch (mb) {
        OP_NVS(1)
        OP_NVS(2)
        OP_NVS(3)
        OP_NVS(4)
        OP_NVS(5)
        OP_NVS(6)
#if OP_MR == 8
        OP_NVS(7)
        OP_NVS(8)
#elif OP_MR != 6
#error "OP_MR must be 6 or 8"
#endif
    }
#undef OP_NVS
#undef OP_TILE
}

/* The row tiles of m rows: ceil(m / OP_MR) tiles of as even heights as possible (32 rows are 6
 * tiles of 5 or 6, not 5 x 6 + 2); tile t starts at row tile_row(t). A function of m alone. */
INLINE long ISA(tile_row)(long m, long t) {
    long tiles = (m + OP_MR - 1) / OP_MR, base = m / tiles, taller = m % tiles;
    return t * base + (t < taller ? t : taller);
}

/* Steps [p, end) of pk_row_panels' strip at column j into acc, prefetching the caller's next panels
 * (pf) if `fetch` (a constant where it is inlined). */
INLINE void ISA(pk_row_steps)(const float *a, const float *p0, V *acc, long k, long p, long end, long j,
                              struct prefetch *pf, int np, int fetch) {
    for (; p < end; p++) {
        float ai = a[p];
        for (int q = 0; q < np; q++)
            for (int v = 0; v < PK_NV; v++)
                acc[q * PK_NV + v] += ai * ISA(load)(p0 + (q * k + p) * AIO_PANEL + j + VL * v);
        if (fetch) prefetch_step(pf);
    }
}

/* One row against np (1 or 2) consecutive panels at once, the first `cols` of their columns kept:
 * strips of PK_NV vectors in each panel, so that every k-step reads whole PK_NV-vector pieces of np
 * forward streams. Where PK_NV vectors span the panel (AVX-512, AVX2), a strip is the whole panel:
 * its k-major rows are read in order, one contiguous stream per panel; narrower strips would make
 * several passes over every panel, each reading one line of each of its rows (AVX2 with the
 * outer-product tile's 2 vectors: a 256-byte stride, 1.6-1.8x slower). Each element is
 * op_tile's FMA chain, in the same order. Unless *streaming, the first 1/PK_PROBE_SHARE of each
 * strip's steps time themselves without prefetching the caller's next panels: only where they
 * streamed from memory (streaming_from_memory, gemm_kernels.c) do the other steps prefetch, and
 * *streaming is set for the strips after. */
INLINE void ISA(pk_row_panels)(const float *a, const float *p0, float *c, long k, long cols, struct prefetch *pf,
                               int np, int *streaming) {
    for (long j = 0; j < AIO_PANEL && j < cols; j += PK_NV * VL) {
        V acc[2 * PK_NV];
        for (int v = 0; v < np * PK_NV; v++) acc[v] = (V){0};
        long probe = 0;
        if (!*streaming) {
            uint64_t start = clock_ticks();
            probe = k / PK_PROBE_SHARE;
            ISA(pk_row_steps)(a, p0, acc, k, 0, probe, j, pf, np, 0);
            *streaming = streaming_from_memory(probe * np * AIO_PANEL * (long)sizeof(float), clock_ticks() - start);
        }
        if (*streaming)
            ISA(pk_row_steps)(a, p0, acc, k, probe, k, j, pf, np, 1);
        else
            ISA(pk_row_steps)(a, p0, acc, k, probe, k, j, pf, np, 0);
        for (int q = 0; q < np; q++) {
            long w = cols - q * AIO_PANEL - j; /* columns of this strip that panel q holds */
            if (w > 0)
                memcpy(c + q * AIO_PANEL + j, acc + q * PK_NV, (w < PK_NV * VL ? w : PK_NV * VL) * sizeof(float));
        }
    }
}

/* One row against the n <= 2 * AIO_PANEL columns of one or two consecutive panels: PK_PANELS panels
 * at a time (AVX-512: two streams and twice the independent FMA chains of one panel; on the M = 1
 * shapes of benchmarks/kernels.py with the weights in cache, 0-10% faster at 1 and 2 threads, two
 * runs of each, native calls; from memory, equal within the noise). */
INLINE void ISA(pk_row)(const float *a, const float *panel, float *c, long k, long n, struct prefetch *pf,
                        int *streaming) {
    long panels = (n + AIO_PANEL - 1) / AIO_PANEL;
    if (PK_PANELS == 2 && panels == 2) {
        ISA(pk_row_panels)(a, panel, c, k, n, pf, 2, streaming);
        return;
    }
    for (long t = 0; t < panels; t++)
        ISA(pk_row_panels)(a, panel + t * k * AIO_PANEL, c + t * AIO_PANEL, k, n - t * AIO_PANEL, pf, 1, streaming);
}

/* Packed float32 weights (aio_gemm_pk_f32): c = a b^T for the first n <= AIO_PANEL columns of one
 * panel of b stored k-major, panel[p * AIO_PANEL + j] = b[j, p] (one row: n <= 2 * AIO_PANEL, over
 * two consecutive panels, pk_row). The outer-product tiles read it in place: the transposition
 * gemm_nt_outer makes on every call (a fifth to a third of its time at m = 16..32) was made once,
 * at load. One row tile (m <= OP_MR) runs the whole k in one pass: a forward stream, which the
 * hardware prefetchers follow. A software prefetch of each line 8 KiB ahead made the M = 1 rows
 * of benchmarks/kernels.py 10-25% slower on weights in L2 or L3, and equal from memory (8.5
 * against 8.7 ms, 1 thread; 6.5 against 6.2, 2 threads). More rows go OP_KC deep at a time, each
 * piece read from L1 by every row tile, while the next panel is prefetched into L2. Each element
 * is one FMA chain in k order whatever m, tile or thread: a row's result does not depend on the
 * batch it is in. */
ISA_TARGET static void ISA(gemm_pk)(const float *a, long lda, const float *panel, float *c, long ldc, long m,
                                    long n, long k, const float *next) {
    struct prefetch pf;
    long tiles = (m + OP_MR - 1) / OP_MR, kc = tiles == 1 ? k : OP_KC;
    if (k == 0) {
        for (long i = 0; i < m; i++) memset(c + i * ldc, 0, n * sizeof(float));
        return;
    }
    if (m == 1) {
        long panels = (n + AIO_PANEL - 1) / AIO_PANEL, strips = (AIO_PANEL + PK_NV * VL - 1) / (PK_NV * VL);
        long passes = PK_PANELS == 2 && panels == 2 ? 1 : panels;
        /* streaming if this thread's previous call found it so (and prefetched this panel), or no probe */
        int streaming = panel == pk_prefetched || !cheap_clock();
        prefetch_init(&pf, next, next ? panels * k * AIO_PANEL : 0, k * strips * passes, panel);
        ISA(pk_row)(a, panel, c, k, n, &pf, &streaming);
        pk_prefetched = streaming ? next : NULL;
        return;
    }
    prefetch_init(&pf, next, next ? k * AIO_PANEL : 0, tiles * k * ((n + OP_NR - 1) / OP_NR), panel);
    for (long j = 0; j < n; j += OP_NR) {
        long w = n - j < OP_NR ? n - j : OP_NR;
        int nv = (int)((w + VL - 1) / VL);
        for (long p = 0; p < k; p += kc) {
            long kw = k - p < kc ? k - p : kc;
            for (long t = 0; t < tiles; t++) {
                long r0 = ISA(tile_row)(m, t), mb = ISA(tile_row)(m, t + 1) - r0;
                ISA(op_tile_sized)(a + r0 * lda + p, lda, panel + p * AIO_PANEL + j, AIO_PANEL, c + r0 * ldc + j,
                                   ldc, kw, w, p == 0, &pf, (int)mb, nv);
            }
        }
    }
}

#ifdef OP_PACK_NT
/* NT by outer products, for m >= OP_MIN_M and k > PACK_MAX_K: b is packed OP_NR rows x OP_KC
 * columns at a time onto the stack, k-major (its cost is 1/m of the FMAs), and every row of a
 * passes over the panel while it is in cache. Meanwhile b_next (the caller's next b) is prefetched
 * into L2 a few lines per step, so that the next call's packing does not wait on memory. Later
 * k-blocks add to the sums in c, and alpha scales them last: each element is the same chain of
 * FMAs for every k-block size. */
INLINE void ISA(gemm_nt_outer)(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                               long m, long n, long k, float alpha, const float *b_next, long n_next) {
    float bp[OP_KC * OP_NR];
    struct prefetch pf;
    long panels = (n + OP_NR - 1) / OP_NR, tiles = (m + OP_MR - 1) / OP_MR;
    prefetch_init(&pf, b_next, n_next * ldb, tiles * panels * k, bp);
    for (long p = 0; p < k; p += OP_KC) {
        long kw = k - p < OP_KC ? k - p : OP_KC;
        for (long j = 0; j < n; j += OP_NR) {
            long w = n - j < OP_NR ? n - j : OP_NR;
            int nv = (int)((w + VL - 1) / VL);
            ISA(pack_transposed)(b + j * ldb + p, ldb, w, kw, bp, OP_NR, VL * nv);
            for (long t = 0; t < tiles; t++) {
                long r0 = ISA(tile_row)(m, t), mb = ISA(tile_row)(m, t + 1) - r0;
                ISA(op_tile_sized)(a + r0 * lda + p, lda, bp, OP_NR, c + r0 * ldc + j, ldc, kw, w, p == 0, &pf,
                                   (int)mb, nv);
            }
        }
    }
    if (alpha != 1.0f)
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) c[i * ldc + j] *= alpha;
}

#endif

ISA_TARGET static void ISA(gemm_nn)(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                    long m, long n, long k, float alpha) {
    ISA(nn_all_columns)(a, lda, b, ldb, c, ldc, m, n, k, alpha, 0);
}

ISA_TARGET static void ISA(gemm_nt)(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                    long m, long n, long k, float alpha, const float *b_next, long n_next) {
#ifdef OP_PACK_NT
    if (m >= OP_MIN_M && k > PACK_MAX_K) {
        ISA(gemm_nt_outer)(a, lda, b, ldb, c, ldc, m, n, k, alpha, b_next, n_next);
        return;
    }
#else
    (void)b_next, (void)n_next;
#endif
    if (m >= PACK_MIN_M && k <= PACK_MAX_K) {
        /* Short dot products: the reductions would cost as much as the FMAs. Transpose PACK_COLS
         * rows of b at a time onto the stack and run the NN kernel on them instead. */
        float bt[PACK_MAX_K * PACK_COLS];
        for (long j = 0; j < n; j += PACK_COLS) {
            long w = n - j < PACK_COLS ? n - j : PACK_COLS;
            ISA(pack_transposed)(b + j * ldb, ldb, w, k, bt, PACK_COLS, w % VL ? w - w % VL + VL : w);
            ISA(nn_all_columns)(a, lda, bt, PACK_COLS, c + j, ldc, m, w, k, alpha, 1);
        }
        return;
    }
    long j = 0;
#ifdef NT_SHIFTED
    long s = (long)((uintptr_t)b / sizeof(float) % VL);
    if (m == 1 && s && ldb % VL == 0 && (uintptr_t)b % sizeof(float) == 0)
        for (; j + NACC / 2 <= n; j += NACC / 2) ISA(nt_row_shifted)(a, b + j * ldb, ldb, c + j, k, alpha, s, NACC / 2);
#endif
    if (m == 1) /* 8 b-rows, no software prefetch (gemm_kernels.c) */
        j = ISA(nt_columns)(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 1, NACC / 2);
    else if (m == 2)
        j = ISA(nt_columns)(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, 2, NACC / 2);
    j = ISA(nt_columns)(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, NT_MB, NT_NB);
    ISA(nt_columns)(a, lda, b, ldb, c, ldc, m, j, n, k, alpha, NT_MB, 1);
}

#include "gemm_wq_tiles.h"

#undef V
#undef OP_NR
#undef INLINE
#undef REDUCE_LEVEL
#undef TRANSPOSE_LEVEL
#undef LO8
#undef HI8
#undef LO4
#undef HI4
#undef LO2
#undef HI2
#undef LO1
#undef HI1
#undef BITREV
