/* Block-scaled int8 GEMM: out = act(x @ W^T + bias) + residual with W stored as GGUF Q8_0 stores it,
 * int8 values with one scale per block of 32 along k (contracts in qblock_kernels.h).
 *
 * Design
 * - Arithmetic (llama.cpp's Q8_0 x Q8_0 dot product): W[j, 32b + t] = wd[b, j] * q[j, 32b + t] and
 *   x[i, 32b + t] ~ xd[i, b] * s[i, 32b + t], both symmetric (scale = max|block| / 127; the weight's
 *   from the file or from quantizing a float matrix, the activation's per call), and
 *       out[i, j] = sum_b float(S_b) * (xd[i, b] * wd[b, j]),   S_b = sum_{t < 32} s q   (exact int32)
 *   the blocks added in order, each with one fused multiply-add. Every instruction set makes the same
 *   float operations on the same exact S_b, so all give bitwise the same output, and so does every
 *   split of the columns over threads.
 * - Why blocks: per-row scales let one outlier in a row (a channel of large activations, a large
 *   weight) coarsen the grid of the whole row; per 32 values it only coarsens its block.
 * - VNNI's vpdpbusd multiplies unsigned bytes by signed ones. Here the *weights* are the unsigned
 *   operand, stored shifted (u = q + 128, at pack time), and the activations stay signed, so
 *       S_b = sum_t u s - 128 sum_t s,
 *   and the compensation xc[i, b] = 128 sum_t s[i, 32b + t] comes from the activations, computed
 *   while quantizing them: one int32 per row and block, broadcast, instead of a per-column term
 *   that every call would stream from memory next to the weight. |u s| <= 255 * 127, so four
 *   fit an int32 lane and AVX2's vpmaddwd (u and s widened to 16 bits) sums pairs exactly.
 * - Packed weight: qgemm_kernels.c's int8 layout (panels of 64 rows, k in groups of 4: byte
 *   p*64*k + g*256 + c*4 + t is u[64p + c, 4g + t]); one block of a panel is 8 groups, 2048 bytes.
 *   wd is (k / 32, padded rows), so the 64 scales of a panel's block are contiguous.
 * - Tiles: AVX-512 keeps MR = 3 rows x 4 vectors (64 columns) of int32 block sums and of float
 *   totals in registers (24 zmm); each block ends with sub, convert and FMA per accumulator; the
 *   panel is prefetched AIO_Q_STREAM_PREFETCH bytes ahead (as qgemm_kernels.c's tiles: weights cycled
 *   from memory, 1 thread, (M, 576, 1536) and (M, 576, 49152): M = 4 +23-26%, M = 1 0-8%). AVX2
 *   and portable compute the block sums of a tile into a buffer (AVX2: vpmaddwd on half a panel,
 *   vphaddd to finish) and share one scalar float loop (fmaf; hardware FMA in the AVX2 copy).
 * - AMX (amx-int8; where aio_q_amx allows): whole blocks of 16 rows. tdpbsud is the signed x
 *   unsigned form, so the same s and u go in: per block, A = 16 rows x 32 bytes of s, and B = one
 *   block of 16 packed columns as they lie (8 groups x 64 bytes, 256 apart); four C tiles (64
 *   columns) go through an int32 buffer into the float update of the AVX-512 path, the totals of
 *   16 x 64 outputs kept in L1. Same exact sums, same FMAs: bitwise the AVX-512 result.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "qblock_kernels.h"
#include "qgemm_isa.h"
#include "qgemm_kernels.h"
#include "vmath.h"

enum { PANEL = AIO_Q_PANEL, BLOCK = AIO_QB_BLOCK, MRB = 3 };

void aio_qb_pack(const int8_t *q, long n, long k, uint8_t *packed) {
    memset(packed, 128, (size_t)(aio_q_padded_rows(n) * k));
    for (long j = 0; j < n; j++) {
        uint8_t *dst = packed + (j / PANEL) * PANEL * k + (j % PANEL) * 4;
        for (long p = 0; p < k; p++) dst[(p / 4) * PANEL * 4 + p % 4] = (uint8_t)(q[j * k + p] + 128);
    }
}

AIO_CLONES void aio_qb_quantize_rows(const float *x, long ldx, long m, long k, int8_t *xq, float *xd, int32_t *xc) {
    long nb = k / BLOCK;
    for (long i = 0; i < m; i++)
        for (long b = 0; b < nb; b++) {
            const float *r = x + i * ldx + b * BLOCK;
            int8_t *s = xq + i * k + b * BLOCK;
            /* max |x| as the integer max of the sign-cleared bits (as aio_q8_quantize_rows; a NaN
             * wins) */
            int32_t top = 0;
            for (int t = 0; t < BLOCK; t++) {
                int32_t bits = aio_bits_f32(r[t]) & 0x7fffffff;
                top = bits > top ? bits : top;
            }
            float amax = aio_from_bits_f32(top);
            xd[i * nb + b] = amax / 127.0f;
            if (!(amax <= FLT_MAX)) { /* inf or NaN: s = 0 and the scale makes the block's products NaN */
                memset(s, 0, BLOCK);
                xc[i * nb + b] = 0;
                continue;
            }
            float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32_t sum = 0;
            for (int t = 0; t < BLOCK; t++) { /* |x * inv| <= 127 (1 + 2^-23)^2: rint is in [-127, 127] */
                int32_t v = (int32_t)rintf(r[t] * inv);
                s[t] = (int8_t)v;
                sum += v;
            }
            xc[i * nb + b] = 128 * sum;
        }
}

/* ---- block sums of rows [0, mr) x one panel (64 columns) for block b: acc[mr][64] = sum_t u s ---- */

static void qb_sums_portable(const int8_t *xq, long k, long b, const uint8_t *panel, int mr, int32_t *acc) {
    const uint8_t *w0 = panel + b * BLOCK * PANEL;
    for (int i = 0; i < mr; i++) {
        const int8_t *x = xq + i * k + b * BLOCK;
        int32_t *a = acc + i * PANEL;
        memset(a, 0, PANEL * sizeof *a);
        for (int g = 0; g < BLOCK / 4; g++) {
            const uint8_t *w = w0 + g * PANEL * 4;
            for (int c = 0; c < PANEL; c++)
                for (int t = 0; t < 4; t++) a[c] += (int32_t)w[c * 4 + t] * (int32_t)x[4 * g + t];
        }
    }
}

#ifdef AIO_X86
AIO_T512 static inline __attribute__((always_inline)) void qb_block_512(const int8_t *xq, long k, long b,
                                                                       const uint8_t *panel, int mr,
                                                                       __m512i acc[MRB][4]) {
    const uint8_t *w0 = panel + b * BLOCK * PANEL;
    __m512i a[MRB * 4]; /* local and flat, copied out at the end: see q8_tile_512 (qgemm_kernels.c) */
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) a[i * 4 + v] = _mm512_setzero_si512();
    for (int g = 0; g < BLOCK / 4; g++) {
        __m512i wv[4];
        for (int v = 0; v < 4; v++) {
            const uint8_t *wp = w0 + g * PANEL * 4 + 64 * v;
            wv[v] = _mm512_loadu_si512(wp);
            _mm_prefetch((const char *)wp + AIO_Q_STREAM_PREFETCH, _MM_HINT_T0);
        }
        for (int i = 0; i < mr; i++) {
            __m512i xb = _mm512_set1_epi32(load4(xq + i * k + b * BLOCK + 4 * g));
            for (int v = 0; v < 4; v++) a[i * 4 + v] = _mm512_dpbusd_epi32(a[i * 4 + v], wv[v], xb);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) acc[i][v] = a[i * 4 + v];
}

AIO_T512 static void qb_sums_512(const int8_t *xq, long k, long b, const uint8_t *panel, int mr, int32_t *acc) {
    __m512i a[MRB][4];
    qb_block_512(xq, k, b, panel, mr, a);
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) _mm512_storeu_si512(acc + i * PANEL + 16 * v, a[i][v]);
}

/* Rows [0, mr) x columns [0, w) of one panel, every block, stored with the bias added. */
AIO_T512 static inline __attribute__((always_inline)) void qb_tile_512(
    const int8_t *xq, const float *xd, const int32_t *xc, long k, const uint8_t *panel, const float *wd, long ldw,
    int mr, const float *bias, float *out, long ldo, long w) {
    long nb = k / BLOCK;
    __m512 f[MRB][4];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) f[i][v] = _mm512_setzero_ps();
    for (long b = 0; b < nb; b++) {
        __m512i acc[MRB][4];
        qb_block_512(xq, k, b, panel, mr, acc);
        __m512 wv[4];
        for (int v = 0; v < 4; v++) wv[v] = _mm512_loadu_ps(wd + b * ldw + 16 * v); /* ldw covers the padding */
        for (int i = 0; i < mr; i++) {
            __m512 sc = _mm512_set1_ps(xd[i * nb + b]);
            __m512i cx = _mm512_set1_epi32(xc[i * nb + b]);
            for (int v = 0; v < 4; v++)
                f[i][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][v], cx)),
                                          _mm512_mul_ps(sc, wv[v]), f[i][v]);
        }
    }
    for (int v = 0; v < 4 && 16 * v < w; v++) {
        long left = w - 16 * v;
        __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + 16 * v) : _mm512_setzero_ps();
        for (int i = 0; i < mr; i++) _mm512_mask_storeu_ps(out + i * ldo + 16 * v, mask, _mm512_add_ps(f[i][v], bv));
    }
}

AIO_T512 static void qb_cols_512(const int8_t *xq, const float *xd, const int32_t *xc, long m, long k,
                                 const uint8_t *panel, const float *wd, long ldw, const float *bias, float *out,
                                 long ldo, long w) {
    long nb = k / BLOCK;
    for (long i = 0; i < m; i += MRB) {
        const int8_t *x = xq + i * k;
        const float *d = xd + i * nb;
        const int32_t *cx = xc + i * nb;
        float *o = out + i * ldo;
        switch (m - i < MRB ? m - i : MRB) {
        case 1: qb_tile_512(x, d, cx, k, panel, wd, ldw, 1, bias, o, ldo, w); break;
        case 2: qb_tile_512(x, d, cx, k, panel, wd, ldw, 2, bias, o, ldo, w); break;
        default: qb_tile_512(x, d, cx, k, panel, wd, ldw, 3, bias, o, ldo, w); break;
        }
    }
}

enum { AMX_ROWS = 16 }; /* rows of one AMX block */

#ifdef AIO_AMX

/* Palette 1: C tiles 0-3 (16 rows x 16 int32), A tile 4 (16 rows x 32 bytes: one block of s),
 * B tiles 5-6 (8 groups x 16 columns x 4 bytes). Static: see qgemm_kernels.c's amx_config. */
static const struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} qb_amx_config __attribute__((aligned(64))) = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, BLOCK, 64, 64},
    .rows = {16, 16, 16, 16, 16, BLOCK / 4, BLOCK / 4},
};

/* Whole 16-row blocks of rows [0, m) x one panel (columns [0, w)); returns the rows done. */
AIO_TAMX static long qb_cols_amx(const int8_t *xq, const float *xd, const int32_t *xc, long m, long k,
                                 const uint8_t *panel, const float *wd, long ldw, const float *bias, float *out,
                                 long ldo, long w) {
    long nb = k / BLOCK, i = 0;
    int32_t acc[AMX_ROWS * PANEL] __attribute__((aligned(64)));
    __m512 f[AMX_ROWS][4];
    for (; i + AMX_ROWS <= m; i += AMX_ROWS) {
        for (int r = 0; r < AMX_ROWS; r++)
            for (int v = 0; v < 4; v++) f[r][v] = _mm512_setzero_ps();
        for (long b = 0; b < nb; b++) {
            const uint8_t *block = panel + b * BLOCK * PANEL;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            _tile_loadd(4, xq + i * k + b * BLOCK, k);
            _tile_loadd(5, block, PANEL * 4);
            _tile_loadd(6, block + 64, PANEL * 4);
            _tile_dpbsud(0, 4, 5);
            _tile_dpbsud(1, 4, 6);
            _tile_loadd(5, block + 128, PANEL * 4);
            _tile_loadd(6, block + 192, PANEL * 4);
            _tile_dpbsud(2, 4, 5);
            _tile_dpbsud(3, 4, 6);
            _tile_stored(0, acc, PANEL * 4);
            _tile_stored(1, acc + 16, PANEL * 4);
            _tile_stored(2, acc + 32, PANEL * 4);
            _tile_stored(3, acc + 48, PANEL * 4);
            __m512 wv[4];
            for (int v = 0; v < 4; v++) wv[v] = _mm512_loadu_ps(wd + b * ldw + 16 * v);
            for (int r = 0; r < AMX_ROWS; r++) {
                __m512 sc = _mm512_set1_ps(xd[(i + r) * nb + b]);
                __m512i cx = _mm512_set1_epi32(xc[(i + r) * nb + b]);
                for (int v = 0; v < 4; v++)
                    f[r][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc + r * PANEL + 16 * v), cx)),
                                              _mm512_mul_ps(sc, wv[v]), f[r][v]);
            }
        }
        for (int v = 0; v < 4 && 16 * v < w; v++) {
            long left = w - 16 * v;
            __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + 16 * v) : _mm512_setzero_ps();
            for (int r = 0; r < AMX_ROWS; r++)
                _mm512_mask_storeu_ps(out + (i + r) * ldo + 16 * v, mask, _mm512_add_ps(f[r][v], bv));
        }
    }
    return i;
}

/* The tile configuration is per thread: every call loads it, and releases the tiles at its end. */
AIO_TAMX static void qb_amx_begin(void) { _tile_loadconfig(&qb_amx_config); }

AIO_TAMX static void qb_amx_end(void) { _tile_release(); }
#endif

/* AVX2: one row, half a panel (32 columns) at a time: 8 accumulators of 4 columns x 2 partial sums. */
AIO_T256 static void qb_sums_avx2(const int8_t *xq, long k, long b, const uint8_t *panel, int mr, int32_t *acc) {
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    const uint8_t *w0 = panel + b * BLOCK * PANEL;
    for (int i = 0; i < mr; i++) {
        const int8_t *x = xq + i * k + b * BLOCK;
        for (int h = 0; h < 2; h++) {
            __m256i a[8];
            for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_si256();
            for (int g = 0; g < BLOCK / 4; g++) {
                __m256i xb = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(load4(x + 4 * g))));
                const uint8_t *w = w0 + g * PANEL * 4 + h * 128;
                for (int j = 0; j < 8; j++) {
                    __m256i wv = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w + 16 * j)));
                    a[j] = _mm256_add_epi32(a[j], _mm256_madd_epi16(wv, xb));
                }
            }
            /* a[j] holds columns 4j..4j+3 as (c0, c0, c1, c1 | c2, c2, c3, c3): add the pairs. */
            for (int q = 0; q < 4; q++) {
                __m256i r = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(a[2 * q], a[2 * q + 1]), order);
                _mm256_storeu_si256((__m256i *)(acc + i * PANEL + h * 32 + 8 * q), r);
            }
        }
    }
}
#endif

static void qb_sums(int isa, const int8_t *xq, long k, long b, const uint8_t *panel, int mr, int32_t *acc) {
#ifdef AIO_X86
    if (isa == AIO_ISA_AVX512) {
        qb_sums_512(xq, k, b, panel, mr, acc);
        return;
    }
    if (isa == AIO_ISA_AVX2) {
        qb_sums_avx2(xq, k, b, panel, mr, acc);
        return;
    }
#endif
    (void)isa;
    qb_sums_portable(xq, k, b, panel, mr, acc);
}

/* AVX2 and portable: tiles of MRB rows, block sums into a buffer, float totals in f (fmaf: the same
 * rounding as the AVX-512 FMA). Inlined into a copy compiled with FMA and a plain one. */
static inline __attribute__((always_inline)) void qb_cols_buffered(
    int isa, const int8_t *xq, const float *xd, const int32_t *xc, long m, long k, const uint8_t *panel,
    const float *wd, long ldw, const float *bias, float *out, long ldo, long w) {
    long nb = k / BLOCK;
    int32_t acc[MRB * PANEL];
    float f[MRB * PANEL];
    for (long i = 0; i < m; i += MRB) {
        int mr = (int)(m - i < MRB ? m - i : MRB);
        memset(f, 0, sizeof f);
        for (long b = 0; b < nb; b++) {
            qb_sums(isa, xq + i * k, k, b, panel, mr, acc);
            for (int r = 0; r < mr; r++) {
                float sc = xd[(i + r) * nb + b];
                int32_t cx = xc[(i + r) * nb + b];
                for (long j = 0; j < w; j++)
                    f[r * PANEL + j] = fmaf((float)(acc[r * PANEL + j] - cx), sc * wd[b * ldw + j], f[r * PANEL + j]);
            }
        }
        for (int r = 0; r < mr; r++)
            for (long j = 0; j < w; j++) out[(i + r) * ldo + j] = bias ? f[r * PANEL + j] + bias[j] : f[r * PANEL + j];
    }
}

#ifdef AIO_X86
AIO_T256 static void qb_cols_avx2(const int8_t *xq, const float *xd, const int32_t *xc, long m, long k,
                                  const uint8_t *panel, const float *wd, long ldw, const float *bias, float *out,
                                  long ldo, long w) {
    qb_cols_buffered(AIO_ISA_AVX2, xq, xd, xc, m, k, panel, wd, ldw, bias, out, ldo, w);
}
#endif

static void qb_cols_portable(const int8_t *xq, const float *xd, const int32_t *xc, long m, long k,
                             const uint8_t *panel, const float *wd, long ldw, const float *bias, float *out, long ldo,
                             long w) {
    qb_cols_buffered(AIO_ISA_PORTABLE, xq, xd, xc, m, k, panel, wd, ldw, bias, out, ldo, w);
}

void aio_qb_linear_cols(const int8_t *xq, const float *xd, const int32_t *xc, long m, long k, const uint8_t *packed,
                        const float *wd, long ldw, const float *bias, int act, const float *residual, float *out,
                        long ldo, long c0, long c1) {
    int isa = aio_q_isa(), amx = m >= AMX_ROWS && isa == AIO_ISA_AVX512 && aio_q_amx();
    long nb = k / BLOCK;
#ifdef AIO_AMX
    if (amx) qb_amx_begin();
#endif
    for (long c = c0; c < c1; c += PANEL) {
        long w = c1 - c < PANEL ? c1 - c : PANEL;
        const uint8_t *panel = packed + (c / PANEL) * PANEL * k;
        const float *b = bias ? bias + c : NULL;
#ifdef AIO_X86
        if (isa == AIO_ISA_AVX512) {
            long done = 0;
#ifdef AIO_AMX
            if (amx) done = qb_cols_amx(xq, xd, xc, m, k, panel, wd + c, ldw, b, out + c, ldo, w);
#endif
            qb_cols_512(xq + done * k, xd + done * nb, xc + done * nb, m - done, k, panel, wd + c, ldw, b,
                        out + done * ldo + c, ldo, w);
        } else if (isa == AIO_ISA_AVX2)
            qb_cols_avx2(xq, xd, xc, m, k, panel, wd + c, ldw, b, out + c, ldo, w);
        else
#endif
            qb_cols_portable(xq, xd, xc, m, k, panel, wd + c, ldw, b, out + c, ldo, w);
        aio_q_finish_rows(out + c, ldo, residual ? residual + c : NULL, m, w, act);
    }
#ifdef AIO_AMX
    if (amx) qb_amx_end();
#endif
    (void)nb;
}

void aio_qb_block_sums(const int8_t *xq, const int32_t *xc, long m, long k, const uint8_t *packed, long n,
                       int32_t *sums) {
    long nb = k / BLOCK;
    int isa = aio_q_isa();
    int32_t acc[MRB * PANEL];
    for (long c = 0; c < n; c += PANEL) {
        long w = n - c < PANEL ? n - c : PANEL;
        const uint8_t *panel = packed + (c / PANEL) * PANEL * k;
        for (long i = 0; i < m; i += MRB) {
            int mr = (int)(m - i < MRB ? m - i : MRB);
            for (long b = 0; b < nb; b++) {
                qb_sums(isa, xq + i * k, k, b, panel, mr, acc);
                for (int r = 0; r < mr; r++)
                    for (long j = 0; j < w; j++)
                        sums[((i + r) * n + c + j) * nb + b] = acc[r * PANEL + j] - xc[(i + r) * nb + b];
            }
        }
    }
}
