/* The weight-only int8 kernel for one vector width: included by gemm_kernels.c after gemm_tiles.h
 * (whose V, ISA(load), ISA(lanes) and, with OP_PACK_NT, the outer-product tile it uses), after defining
 *   WQ_MR, WQ_NV  the dequantizing tile: up to WQ_MR rows x WQ_NV vectors of columns
 *   WQ_MR_WIDE    the most rows that take all WQ_NV vectors at once; taller tiles take WQ_NV / 2
 *   WQ_WIDEN(q)   optional: the VL int8 at q sign-extended to a vector of VL int32
 * See gemm_kernels.c's design for the arithmetic. Defines static ISA(gemm_wq).
 */
#ifndef WQ_WIDEN
typedef signed char ISA(bytes) __attribute__((vector_size(VL)));
#endif
typedef int ISA(ints) __attribute__((vector_size(VL * sizeof(int))));
#define WQ_COLS (WQ_NV * VL)
#define WQ_INLINE static inline __attribute__((always_inline)) ISA_TARGET

/* The VL weights at q, in float32 and scaled: float(q) * s, one rounding. The bytes are widened to
 * int32 by WQ_WIDEN(q) where the includer has one (a sign-extending load: GCC lowers the generic
 * conversion of a byte vector lane by lane, 10x slower here). */
WQ_INLINE V ISA(dequantize)(const int8_t *q, V s) {
#ifdef WQ_WIDEN
    ISA(ints) i = (ISA(ints))WQ_WIDEN(q);
#else
    ISA(bytes) b;
    memcpy(&b, q, sizeof b);
    ISA(ints) i = __builtin_convertvector(b, ISA(ints));
#endif
    return __builtin_convertvector(i, V) * s;
}

/* c[i, j] = sum_p a[i, p] * (float(q[j, p]) * s[p / 32, j]) for i < mb, j < w <= WQ_COLS: q read
 * at q[p * AIO_PANEL + j], scales at s[(p / 32) * lds + j], all WQ_COLS columns (padded), the
 * first w stored. The weight is dequantized in registers, once per step for all mb rows; each
 * element is one FMA chain in p order. */
WQ_INLINE void ISA(wq_tile)(const float *a, long lda, const int8_t *q, const float *s, long lds, float *c,
                            long ldc, long k, long w, int mb) {
    /* Taller tiles run the strip in two halves, so their accumulators stay within the registers. */
    const int nv = mb > WQ_MR_WIDE ? WQ_NV / 2 : WQ_NV;
    for (int v0 = 0; v0 < WQ_NV && VL * v0 < w; v0 += nv) {
        V acc[WQ_MR * WQ_NV];
        for (int i = 0; i < mb * nv; i++) acc[i] = (V){0};
        for (long b = 0; b < k; b += AIO_WQ_BLOCK) {
            V sv[WQ_NV];
            for (int v = 0; v < nv; v++) sv[v] = ISA(load)(s + (b / AIO_WQ_BLOCK) * lds + VL * (v0 + v));
            for (long p = b; p < b + AIO_WQ_BLOCK; p++) {
                V bv[WQ_NV];
                for (int v = 0; v < nv; v++) bv[v] = ISA(dequantize)(q + p * AIO_PANEL + VL * (v0 + v), sv[v]);
                if (mb == 1) /* one row: a pure stream of the weight */
                    __builtin_prefetch(q + (p + WQ_PREFETCH) * AIO_PANEL);
                for (int i = 0; i < mb; i++) {
                    float ai = a[i * lda + p];
                    for (int v = 0; v < nv; v++) acc[i * nv + v] += ai * bv[v];
                }
            }
        }
        for (int i = 0; i < mb; i++)
            for (int v = 0; v < nv && VL * (v0 + v) < w; v++)
                memcpy(c + i * ldc + VL * (v0 + v), &acc[i * nv + v], ISA(lanes)(w, v0 + v) * sizeof(float));
    }
}

/* The rows of m, in ceil(m / WQ_MR) tiles of even heights (sizes made constants for the unrolling),
 * over the WQ_COLS-column strips of the panel's first n columns. */
WQ_INLINE void ISA(wq_dot)(const float *a, long lda, const int8_t *q, const float *s, long lds, float *c,
                           long ldc, long m, long n, long k) {
    long tiles = (m + WQ_MR - 1) / WQ_MR;
    for (long j = 0; j < n; j += WQ_COLS) {
        long w = n - j < WQ_COLS ? n - j : WQ_COLS;
        for (long t = 0; t < tiles; t++) {
            long r0 = t * m / tiles, mb = (t + 1) * m / tiles - r0;
            const float *at = a + r0 * lda;
            float *ct = c + r0 * ldc + j;
#define WQ_TILE(MB) case MB: ISA(wq_tile)(at, lda, q + j, s + j, lds, ct, ldc, k, w, MB); break;
            switch (mb) {
                WQ_TILE(1)
                WQ_TILE(2)
                WQ_TILE(3)
                WQ_TILE(4)
#if WQ_MR >= 6
                WQ_TILE(5)
                WQ_TILE(6)
#endif
#if WQ_MR == 8
                WQ_TILE(7)
                WQ_TILE(8)
#elif WQ_MR != 4 && WQ_MR != 6
#error "WQ_MR must be 4, 6 or 8"
#endif
            }
#undef WQ_TILE
        }
    }
}

#ifdef OP_PACK_NT
/* More rows than one tile: OP_KC x OP_NR pieces of the panel dequantized once into a float panel on
 * the stack (the layout of gemm_tiles.h's outer products), which every row tile then reads (8 rows:
 * 1.6x faster than two dequantizing tiles, which convert every weight twice). The float
 * weights are those of wq_tile and the outer-product tile makes the same FMA chains: the result
 * is bitwise the same as wq_dot's. The next panel is prefetched into L2 meanwhile. */
WQ_INLINE void ISA(wq_outer)(const float *a, long lda, const int8_t *q, const float *s, long lds, float *c,
                             long ldc, long m, long n, long k, const int8_t *next) {
    float bp[OP_KC * OP_NR];
    struct prefetch pf;
    long tiles = (m + OP_MR - 1) / OP_MR, panels = (n + OP_NR - 1) / OP_NR;
    prefetch_init(&pf, (const float *)next, next ? k * AIO_PANEL / (long)sizeof(float) : 0,
                  tiles * panels * k, bp);
    for (long p = 0; p < k; p += OP_KC) {
        long kw = k - p < OP_KC ? k - p : OP_KC;
        for (long j = 0; j < n; j += OP_NR) {
            long w = n - j < OP_NR ? n - j : OP_NR;
            int nv = (int)((w + VL - 1) / VL);
            for (long pp = 0; pp < kw; pp++) {
                const float *sb = s + ((p + pp) / AIO_WQ_BLOCK) * lds + j;
                for (int v = 0; v < nv; v++) {
                    V wv = ISA(dequantize)(q + (p + pp) * AIO_PANEL + j + VL * v, ISA(load)(sb + VL * v));
                    memcpy(bp + pp * OP_NR + VL * v, &wv, sizeof wv);
                }
            }
            for (long t = 0; t < tiles; t++) {
                long r0 = ISA(tile_row)(m, t), mb = ISA(tile_row)(m, t + 1) - r0;
                ISA(op_tile_sized)(a + r0 * lda + p, lda, bp, OP_NR, c + r0 * ldc + j, ldc, kw, w, p == 0, &pf, (int)mb,
                                   nv);
            }
        }
    }
}
#endif

ISA_TARGET static void ISA(gemm_wq)(const float *a, long lda, const int8_t *q, const float *s, long lds, float *c,
                                    long ldc, long m, long n, long k, const int8_t *next) {
#ifdef OP_PACK_NT
    if (m > WQ_MR && k > 0) { /* more than one row tile (k = 0: the tiles store the zeros) */
        ISA(wq_outer)(a, lda, q, s, lds, c, ldc, m, n, k, next);
        return;
    }
#else
    (void)next;
#endif
    ISA(wq_dot)(a, lda, q, s, lds, c, ldc, m, n, k);
}

#undef WQ_COLS
#undef WQ_INLINE
