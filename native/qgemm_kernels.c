/* int8 and bfloat16 GEMM for quantized linear layers: out = act(x @ W^T + bias) + residual with W
 * stored in 8 or 16 bits (contracts in qgemm_kernels.h).
 *
 * Design
 * - int8 arithmetic (symmetric, per row): W[j, :] = ws[j] * q[j, :] with ws[j] = max|W[j, :]| / 127
 *   (quantized once at load), x[i, :] ~ xs[i] * s[i, :] (quantized per call, same formula), and
 *   out[i, j] = xs[i] ws[j] sum_p s[i, p] q[j, p]; the sum is exact in int32 (|terms| <= 127^2, so
 *   up to 133,000 of them).
 * - VNNI's vpdpbusd multiplies an *unsigned* byte by a signed one (4 products summed into each
 *   int32 lane). Activations are therefore stored shifted, u = s + 128 in [1, 255], and the shift is
 *   taken back with a per-row compensation term computed at pack time:
 *       sum_p u q = sum_p s q + 128 sum_p q   =>   sum_p s q = sum_p u q - comp[j],
 *   comp[j] = 128 sum_p q[j, p]. Every instruction set uses the same u and comp, so all three give
 *   bitwise the same int32 sums. Products u q <= 255 * 127: four fit an int32 lane (vpdpbusd does not
 *   saturate) and AVX2's vpmaddwd on 16-bit operands sums pairs of them exactly.
 * - Packed weight layout: rows in panels of 64 (zero-padded), k in groups of 4 (zero-padded);
 *   panel p, group g holds 64 rows x 4 bytes contiguously: byte p*64*kp + g*256 + c*4 + t is
 *   q[64p + c, 4g + t]. One group of a panel is four 64-byte vectors, each 16 output columns x 4
 *   k values: exactly vpdpbusd's operand, with x[i, 4g..4g+3] broadcast to all lanes. A panel is read
 *   front to back, one stream, whatever the number of rows.
 * - Tiles: AVX-512 keeps MR = 6 rows x 4 vectors (24 zmm accumulators) per panel: each weight
 *   vector loaded serves 6 rows, each broadcast 4 columns. Threads own whole panels (the caller
 *   splits columns), so each weight byte comes from memory once per call at any batch size; rows
 *   go in blocks of 32 through all of a thread's panels (aio_q8_linear_cols), which reads the
 *   weight again from cache for each block of a large batch.
 *   AVX2 (no VNNI): vpmovsxbw + vpmaddwd on half a panel per row, pairs reduced with vphaddd at
 *   the end. Portable: plain loops over the same layout.
 * - The AVX-512 tiles prefetch the panel AIO_Q_STREAM_PREFETCH bytes ahead of their loads (the panels
 *   form one forward stream, so this runs into the next panel): in decoding the weights come from
 *   memory, and with 4 rows (beam 4) per weight vector the out-of-order window alone covers too few
 *   cache lines. OPUS-MT shape, int8, beam 4, batch 1, 1 thread: median call +18% (1024-8192 bytes
 *   measured, 4096 best); greedy unchanged.
 * - AMX (amx-int8, Sapphire Rapids on): rows in blocks of 32, when kp is a multiple of 64. tdpbusd
 *   is vpdpbusd on 16 x 16 int32 tiles (u8 x s8, exact, 16 x 64 of A against 64 x 16 of B), and
 *   the packed panel is already its B operand: 16 groups (64 k) x 16 columns x 4 bytes, rows
 *   256 bytes apart. Four accumulator tiles (32 rows x 32 columns), two A and two B tiles; a block
 *   goes through an int32 buffer into the AVX-512 epilogue, so a row gives bitwise the same output
 *   on either path. Leftover rows take the AVX-512 tiles. Linux lends the tile state to a process
 *   on request (arch_prctl ARCH_REQ_XCOMP_PERM); refused, or on another OS, AMX stays off.
 * - Epilogue per tile, in registers: float(acc - comp) * (xs * ws) + bias, stored; then the
 *   activation (activation.h) and the residual over the tile's rows while they are in L1.
 * - bfloat16: W rounded to bf16 (nearest even) at load, x per call; vdpbf16ps accumulates pairs of
 *   products in float32. Layout as int8 with k in pairs: panel p, pair g: 64 rows x 2 bf16
 *   (256 bytes) at element p*64*kp + g*128 + c*2 + t. Without AVX512_BF16 a portable loop computes
 *   the same products (bf16 -> float32 is exact) in float32.
 * - Dispatch: __builtin_cpu_supports once (cpuid and OS state), never -march=native;
 *   aio_q_set_isa forces a lower set for the tests.
 */
#include <math.h>
#include <string.h>

#include "activation.h"
#include "qgemm_isa.h"
#include "qgemm_kernels.h"

#ifdef AIO_X86
#define AIO_TBF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#endif
#ifdef AIO_AMX
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

enum { PANEL = AIO_Q_PANEL, MR512 = 6 };

long aio_q_padded_rows(long n) { return (n + PANEL - 1) / PANEL * PANEL; }
long aio_q8_padded_k(long k) { return (k + 3) & ~3L; }
long aio_bf16_padded_k(long k) { return (k + 1) & ~1L; }

/* ---- dispatch ---- */

static int best_isa(int want_bf16) {
#ifdef AIO_X86
    __builtin_cpu_init();
    if (want_bf16)
        return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") ? AIO_ISA_AVX512
                                                                                            : AIO_ISA_PORTABLE;
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return AIO_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return AIO_ISA_AVX2;
#endif
    (void)want_bf16;
    return AIO_ISA_PORTABLE;
}

static int q8_isa = AIO_ISA_AUTO, bf16_isa = AIO_ISA_AUTO;

int aio_q_isa(void) {
    if (q8_isa == AIO_ISA_AUTO) q8_isa = best_isa(0);
    return q8_isa;
}

int aio_q_bf16_isa(void) {
    if (bf16_isa == AIO_ISA_AUTO) bf16_isa = best_isa(1);
    return bf16_isa;
}

/* AMX: the CPU has amx-tile and amx-int8 (CPUID 7.0 EDX bits 24, 25) and the kernel lends the tile data. */
static int amx_available(void) {
#ifdef AIO_AMX
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return 0;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
    return 0;
#endif
}

static int q8_amx = -1; /* -1: not asked yet */

int aio_q_amx(void) {
    if (q8_amx < 0) q8_amx = aio_q_isa() == AIO_ISA_AVX512 && amx_available();
    return q8_amx;
}

int aio_q_set_amx(int on) {
    q8_amx = on && aio_q_isa() == AIO_ISA_AVX512 && amx_available();
    return q8_amx;
}

int aio_q_set_isa(int isa) {
    int best = best_isa(0), best_bf16 = best_isa(1);
    q8_amx = -1; /* AMX follows the int8 set: only with AVX-512 */
    q8_isa = isa == AIO_ISA_AUTO || isa < best ? best : isa;
    bf16_isa = isa == AIO_ISA_AUTO || isa < best_bf16 ? best_bf16 : (isa == AIO_ISA_AVX2 ? AIO_ISA_PORTABLE : isa);
    return q8_isa;
}

/* ---- int8 packing and activation quantization ---- */

void aio_q8_pack(const int8_t *q, long n, long k, int8_t *packed, int32_t *comp) {
    long kp = aio_q8_padded_k(k), np = aio_q_padded_rows(n);
    memset(packed, 0, (size_t)(np * kp));
    for (long j = 0; j < np; j++) {
        int32_t sum = 0;
        int8_t *dst = packed + (j / PANEL) * PANEL * kp + (j % PANEL) * 4;
        if (j < n)
            for (long p = 0; p < k; p++) {
                dst[(p / 4) * PANEL * 4 + p % 4] = q[j * k + p];
                sum += q[j * k + p];
            }
        comp[j] = 128 * sum;
    }
}

void aio_q8_select(const int8_t *packed, long k, const int64_t *rows, long count, int8_t *out) {
    long kp = aio_q8_padded_k(k);
    memset(out, 0, (size_t)(aio_q_padded_rows(count) * kp));
    for (long i = 0; i < count; i++) {
        const int8_t *src = packed + (rows[i] / PANEL) * PANEL * kp + (rows[i] % PANEL) * 4;
        int8_t *dst = out + (i / PANEL) * PANEL * kp + (i % PANEL) * 4;
        for (long g = 0; g < kp / 4; g++) memcpy(dst + g * PANEL * 4, src + g * PANEL * 4, 4);
    }
}

AIO_CLONES void aio_q8_quantize_rows(const float *x, long ldx, long m, long k, uint8_t *xu, float *scales) {
    long kp = aio_q8_padded_k(k);
    for (long i = 0; i < m; i++) {
        const float *r = x + i * ldx;
        uint8_t *u = xu + i * kp;
        /* max |x| as an integer max of the sign-cleared bits (monotonic for non-negative floats;
         * vectorizes without -ffast-math; a NaN wins and makes the scale NaN). */
        int32_t top = 0;
        for (long p = 0; p < k; p++) {
            int32_t b = aio_bits_f32(r[p]) & 0x7fffffff;
            top = b > top ? b : top;
        }
        float amax = aio_from_bits_f32(top);
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        /* |x * inv| <= 127 (1 + 2^-23)^2, so rint lands in [-127, 127]. */
        for (long p = 0; p < k; p++) u[p] = (uint8_t)((int32_t)rintf(r[p] * inv) + 128);
        for (long p = k; p < kp; p++) u[p] = 128;
        scales[i] = amax / 127.0f;
    }
}

/* ---- int8 products: one panel (64 columns) for rows [0, mr) of xu, into acc[mr][64] ---- */

static void q8_panel_portable(const uint8_t *xu, long kp, const int8_t *panel, int mr, int32_t *acc) {
    for (int i = 0; i < mr; i++) {
        int32_t *a = acc + i * PANEL;
        memset(a, 0, PANEL * sizeof *a);
        const uint8_t *x = xu + i * kp;
        for (long g = 0; g < kp / 4; g++) {
            const int8_t *w = panel + g * PANEL * 4;
            for (int c = 0; c < PANEL; c++)
                for (int t = 0; t < 4; t++) a[c] += (int32_t)x[4 * g + t] * (int32_t)w[c * 4 + t];
        }
    }
}

#ifdef AIO_X86

AIO_T512 static inline __attribute__((always_inline)) void q8_tile_512(const uint8_t *xu, long kp,
                                                                      const int8_t *panel, int mr,
                                                                      __m512i acc[MR512][4]) {
    /* Accumulate in a local, flat array copied out at the end: accumulating in the caller's acc, GCC
     * 12 kept it on the stack and stored 12 of the 24 accumulators in every k step, which halved the
     * kernel's speed (M = 32, K = 512, N = 2048, 1 thread: 325 us, 206 GOPS; now 166 us, 404 GOPS,
     * 88% of this Zen 4's measured vpdpbusd peak). */
    __m512i a[MR512 * 4];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) a[i * 4 + v] = _mm512_setzero_si512();
    for (long g = 0; g < kp / 4; g++) {
        const int8_t *w = panel + g * PANEL * 4;
        __m512i wv[4];
        for (int v = 0; v < 4; v++) {
            wv[v] = _mm512_loadu_si512(w + 64 * v);
            _mm_prefetch((const char *)(w + AIO_Q_STREAM_PREFETCH + 64 * v), _MM_HINT_T0);
        }
        for (int i = 0; i < mr; i++) {
            __m512i xb = _mm512_set1_epi32(load4(xu + i * kp + 4 * g));
            for (int v = 0; v < 4; v++) a[i * 4 + v] = _mm512_dpbusd_epi32(a[i * 4 + v], xb, wv[v]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) acc[i][v] = a[i * 4 + v];
}

/* Rows [0, mr) x columns [c, c + w) (w <= 64): the float epilogue; acc minus comp exact in int32. */
AIO_T512 static inline __attribute__((always_inline)) void q8_store_512(
    __m512i acc[MR512][4], int mr, const float *xs, const int32_t *comp, const float *ws, const float *bias,
    float *out, long ldo, long w) {
    for (int v = 0; v < 4 && 16 * v < w; v++) {
        long left = w - 16 * v;
        __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512i cv = _mm512_maskz_loadu_epi32(mask, comp + 16 * v);
        __m512 wsv = _mm512_maskz_loadu_ps(mask, ws + 16 * v);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + 16 * v) : _mm512_setzero_ps();
        for (int i = 0; i < mr; i++) {
            __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][v], cv));
            f = _mm512_add_ps(_mm512_mul_ps(f, _mm512_mul_ps(_mm512_set1_ps(xs[i]), wsv)), bv);
            _mm512_mask_storeu_ps(out + i * ldo + 16 * v, mask, f);
        }
    }
}

#define Q8_TILE_512(MR)                                                                             \
    do {                                                                                            \
        __m512i acc[MR512][4];                                                                      \
        q8_tile_512(x, kp, panel, MR, acc);                                                         \
        q8_store_512(acc, MR, xs + i, comp + c, ws + c, bias ? bias + c : NULL, out + i * ldo + c, ldo, w); \
    } while (0)

AIO_T512 static void q8_cols_512(const uint8_t *xu, const float *xs, long m, long kp, const int8_t *packed,
                                 const int32_t *comp, const float *ws, const float *bias, float *out, long ldo,
                                 long c, long w) {
    const int8_t *panel = packed + (c / PANEL) * PANEL * kp;
    for (long i = 0; i < m; i += MR512) {
        const uint8_t *x = xu + i * kp;
        switch (m - i < MR512 ? m - i : MR512) {
        case 1: Q8_TILE_512(1); break;
        case 2: Q8_TILE_512(2); break;
        case 3: Q8_TILE_512(3); break;
        case 4: Q8_TILE_512(4); break;
        case 5: Q8_TILE_512(5); break;
        default: Q8_TILE_512(6); break;
        }
    }
}

/* The int32 tile alone (matmul_s32): mr <= MR512 rows. */
AIO_T512 static void q8_panel_512(const uint8_t *xu, long kp, const int8_t *panel, int mr, int32_t *acc) {
    __m512i a[MR512][4];
    memset(a, 0, sizeof a); /* rows past mr are never stored, but GCC cannot see it */
    switch (mr) {
    case 1: q8_tile_512(xu, kp, panel, 1, a); break;
    case 2: q8_tile_512(xu, kp, panel, 2, a); break;
    case 3: q8_tile_512(xu, kp, panel, 3, a); break;
    default: q8_tile_512(xu, kp, panel, 4, a); break;
    }
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) _mm512_storeu_si512(acc + i * PANEL + 16 * v, a[i][v]);
}

#ifdef AIO_AMX
enum { AMX_ROWS = 32, AMX_K = 64 };

/* Palette 1, all eight tiles 16 rows x 64 bytes: accumulators 0-3, A 4-5, B 6-7. Static data: GCC 12's
 * _tile_loadconfig tells the compiler it reads 8 bytes, so a local's other stores could be dropped. */
static const struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config __attribute__((aligned(64))) = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

/* The tile configuration is per thread: every call loads it, and releases the tiles at its end. */
AIO_TAMX static void amx_begin(void) { _tile_loadconfig(&amx_config); }

AIO_TAMX static void amx_end(void) { _tile_release(); }

/* acc[32][PANEL] = rows [0, 32) of xu times one panel (int32, before compensation); kp % 64 == 0. */
AIO_TAMX static void q8_block_amx(const uint8_t *xu, long kp, const int8_t *panel, int32_t *acc) {
    for (int h = 0; h < 2; h++) { /* columns [32h, 32h + 32) */
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (long k0 = 0; k0 < kp; k0 += AMX_K) {
            const int8_t *b = panel + k0 * PANEL + h * 128; /* group k0/4, column 32h */
            _tile_loadd(4, xu + k0, kp);
            _tile_loadd(5, xu + 16 * kp + k0, kp);
            _tile_loadd(6, b, PANEL * 4);
            _tile_loadd(7, b + 64, PANEL * 4);
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        }
        int32_t *o = acc + h * 32;
        _tile_stored(0, o, PANEL * 4);
        _tile_stored(1, o + 16, PANEL * 4);
        _tile_stored(2, o + 16 * PANEL, PANEL * 4);
        _tile_stored(3, o + 16 * PANEL + 16, PANEL * 4);
    }
}

/* Whole 32-row blocks of rows [0, m) x columns [c, c + w) through AMX; returns the rows done. */
AIO_TAMX static long q8_cols_amx(const uint8_t *xu, const float *xs, long m, long kp, const int8_t *packed,
                                 const int32_t *comp, const float *ws, const float *bias, float *out, long ldo,
                                 long c, long w) {
    const int8_t *panel = packed + (c / PANEL) * PANEL * kp;
    int32_t buf[AMX_ROWS * PANEL] __attribute__((aligned(64)));
    long i = 0;
    for (; i + AMX_ROWS <= m; i += AMX_ROWS) {
        q8_block_amx(xu + i * kp, kp, panel, buf);
        for (int r = 0; r < AMX_ROWS; r += MR512) {
            int mr = AMX_ROWS - r < MR512 ? AMX_ROWS - r : MR512;
            __m512i acc[MR512][4];
            for (int q = 0; q < mr; q++)
                for (int v = 0; v < 4; v++) acc[q][v] = _mm512_load_si512(buf + (r + q) * PANEL + 16 * v);
            q8_store_512(acc, mr, xs + i + r, comp + c, ws + c, bias ? bias + c : NULL, out + (i + r) * ldo + c,
                         ldo, w);
        }
    }
    return i;
}
#endif

/* AVX2: one row, half a panel (32 columns, 8 accumulators of 4 columns x 2 partial sums) at a time,
 * both halves over each Q8_AVX2_CHUNK groups (4 KiB of the panel) before the next: a half alone reads
 * every other pair of lines, and two passes over the panel made memory serve it twice as two strided
 * streams. (1, 512, 2048) with the weights from memory, 1 thread: 54.5 -> 40.3 us a product (chunks
 * of 8 to 64 groups: 41.1, 40.3, 42.0, 51.3), the AVX-512 VNNI kernel ~41-47. */
enum { Q8_AVX2_CHUNK = 16 };
AIO_T256 static void q8_panel_avx2(const uint8_t *xu, long kp, const int8_t *panel, int mr, int32_t *acc) {
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    for (int i = 0; i < mr; i++) {
        const uint8_t *x = xu + i * kp;
        __m256i a[2][8];
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 8; j++) a[h][j] = _mm256_setzero_si256();
        for (long g0 = 0; g0 < kp / 4; g0 += Q8_AVX2_CHUNK) {
            long g1 = g0 + Q8_AVX2_CHUNK < kp / 4 ? g0 + Q8_AVX2_CHUNK : kp / 4;
            for (int h = 0; h < 2; h++)
                for (long g = g0; g < g1; g++) {
                    __m256i xb = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(load4(x + 4 * g))));
                    const int8_t *w = panel + g * PANEL * 4 + h * 128;
                    for (int j = 0; j < 8; j++) {
                        __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16 * j)));
                        a[h][j] = _mm256_add_epi32(a[h][j], _mm256_madd_epi16(wv, xb));
                    }
                }
        }
        /* a[h][j] holds columns 32h + 4j.. + 3 as (c0, c0, c1, c1 | c2, c2, c3, c3): add the pairs. */
        for (int h = 0; h < 2; h++)
            for (int q = 0; q < 4; q++) {
                __m256i r = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(a[h][2 * q], a[h][2 * q + 1]), order);
                _mm256_storeu_si256((__m256i *)(acc + i * PANEL + h * 32 + 8 * q), r);
            }
    }
}
#endif

/* Scalar epilogue over an int32 tile (the AVX2 and portable paths). */
static void q8_store(const int32_t *acc, int mr, const float *xs, const int32_t *comp, const float *ws,
                     const float *bias, float *out, long ldo, long w) {
    for (int i = 0; i < mr; i++)
        for (long j = 0; j < w; j++) {
            float f = (float)(acc[i * PANEL + j] - comp[j]) * (xs[i] * ws[j]);
            out[i * ldo + j] = bias ? f + bias[j] : f;
        }
}

enum { MR_SCALAR = 4 };

static void q8_panel(int isa, const uint8_t *xu, long kp, const int8_t *panel, int mr, int32_t *acc) {
#ifdef AIO_X86
    if (isa == AIO_ISA_AVX512) {
        q8_panel_512(xu, kp, panel, mr, acc);
        return;
    }
    if (isa == AIO_ISA_AVX2) {
        q8_panel_avx2(xu, kp, panel, mr, acc);
        return;
    }
#endif
    (void)isa;
    q8_panel_portable(xu, kp, panel, mr, acc);
}

void aio_q_finish_rows(float *out, long ldo, const float *residual, long mr, long w, int act) {
    for (long i = 0; i < mr; i++) {
        float *o = out + i * ldo;
        if (act != AIO_ACT_NONE) aio_activate_f32(o, w, act);
        if (residual)
            for (long j = 0; j < w; j++) o[j] += residual[i * ldo + j];
    }
}

enum { ROW_BLOCK = 32, COL_BLOCK_BYTES = 512 * 1024 };

/* AMX takes this call: at least one 32-row block, k in whole 64-byte tile rows. */
static int use_amx(long m, long kp) { return m >= 32 && kp % 64 == 0 && aio_q_amx(); }

/* Columns [c0, c1) of rows [0, m): one panel at a time, each through all the rows. */
static void q8_rows_cols(int isa, int amx, const uint8_t *xu, const float *xs, long m, long kp,
                         const int8_t *packed, const int32_t *comp, const float *ws, const float *bias, int act,
                         const float *residual, float *out, long ldo, long c0, long c1) {
    for (long c = c0; c < c1; c += PANEL) {
        long w = c1 - c < PANEL ? c1 - c : PANEL;
#ifdef AIO_X86
        if (isa == AIO_ISA_AVX512) {
            long done = 0;
#ifdef AIO_AMX
            if (amx) done = q8_cols_amx(xu, xs, m, kp, packed, comp, ws, bias, out, ldo, c, w);
#endif
            if (done < m)
                q8_cols_512(xu + done * kp, xs + done, m - done, kp, packed, comp, ws, bias, out + done * ldo, ldo,
                            c, w);
            aio_q_finish_rows(out + c, ldo, residual ? residual + c : NULL, m, w, act);
            continue;
        }
#endif
        int32_t acc[MR_SCALAR * PANEL];
        const int8_t *panel = packed + (c / PANEL) * PANEL * kp;
        for (long i = 0; i < m; i += MR_SCALAR) {
            int mr = (int)(m - i < MR_SCALAR ? m - i : MR_SCALAR);
            q8_panel(isa, xu + i * kp, kp, panel, mr, acc);
            q8_store(acc, mr, xs + i, comp + c, ws + c, bias ? bias + c : NULL, out + i * ldo + c, ldo, w);
        }
        aio_q_finish_rows(out + c, ldo, residual ? residual + c : NULL, m, w, act);
    }
    (void)amx;
}

void aio_q8_linear_cols(const uint8_t *xu, const float *xs, long m, long k, const int8_t *packed,
                        const int32_t *comp, const float *ws, const float *bias, int act,
                        const float *residual, float *out, long ldo, long c0, long c1) {
    long kp = aio_q8_padded_k(k);
    int isa = aio_q_isa(), amx = use_amx(m, kp);
#ifdef AIO_AMX
    if (amx) amx_begin();
#endif
    /* Many rows (a source batch, beams): the columns in blocks whose weight fits L2 (COL_BLOCK_BYTES),
     * and in each, blocks of ROW_BLOCK rows (one AMX block) through all its panels: a weight byte
     * comes from memory once, and a block of rows stays in L1 while the panels pass from L2.
     * Measured, M = 800, K = 512, N = 2048: about 3x faster than every panel through all rows (AMX
     * and AVX-512 alike); 64-row blocks were as fast, 128 rows and more as slow as no blocks. */
    long cols = (COL_BLOCK_BYTES / (kp > 0 ? kp * PANEL : 1) + 1) * PANEL; /* k = 0: one block */
    for (long cb = c0; cb < c1; cb += cols) {
        long ce = c1 - cb < cols ? c1 : cb + cols;
        for (long r0 = 0; r0 < m; r0 += ROW_BLOCK) {
            long mb = m - r0 < ROW_BLOCK ? m - r0 : ROW_BLOCK;
            q8_rows_cols(isa, amx, xu + r0 * kp, xs + r0, mb, kp, packed, comp, ws, bias, act,
                         residual ? residual + r0 * ldo : NULL, out + r0 * ldo, ldo, cb, ce);
        }
    }
#ifdef AIO_AMX
    if (amx) amx_end();
#endif
}

void aio_q8_matmul_s32(const uint8_t *xu, long m, long k, const int8_t *packed, const int32_t *comp,
                       long n, int32_t *acc) {
    long kp = aio_q8_padded_k(k);
    int isa = aio_q_isa();
    int32_t tile[MR_SCALAR * PANEL];
    int amx = use_amx(m, kp);
#ifdef AIO_AMX
    int32_t block[32 * PANEL] __attribute__((aligned(64)));
    if (amx) amx_begin();
#endif
    for (long c = 0; c < n; c += PANEL) {
        long w = n - c < PANEL ? n - c : PANEL;
        const int8_t *panel = packed + (c / PANEL) * PANEL * kp;
        long i = 0;
#ifdef AIO_AMX
        for (; amx && i + 32 <= m; i += 32) {
            q8_block_amx(xu + i * kp, kp, panel, block);
            for (int r = 0; r < 32; r++)
                for (long j = 0; j < w; j++) acc[(i + r) * n + c + j] = block[r * PANEL + j] - comp[c + j];
        }
#endif
        for (; i < m; i += MR_SCALAR) {
            int mr = (int)(m - i < MR_SCALAR ? m - i : MR_SCALAR);
            q8_panel(isa, xu + i * kp, kp, panel, mr, tile);
            for (int r = 0; r < mr; r++)
                for (long j = 0; j < w; j++) acc[(i + r) * n + c + j] = tile[r * PANEL + j] - comp[c + j];
        }
    }
#ifdef AIO_AMX
    if (amx) amx_end();
#endif
    (void)amx;
}

/* ---- bfloat16 ---- */

static inline uint16_t to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40); /* NaN stays (quiet) NaN */
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

static inline float from_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

void aio_bf16_pack(const float *w, long n, long k, uint16_t *packed) {
    long kp = aio_bf16_padded_k(k), np = aio_q_padded_rows(n);
    memset(packed, 0, (size_t)(np * kp) * sizeof *packed);
    for (long j = 0; j < n; j++) {
        uint16_t *dst = packed + (j / PANEL) * PANEL * kp + (j % PANEL) * 2;
        for (long p = 0; p < k; p++) dst[(p / 2) * PANEL * 2 + p % 2] = to_bf16(w[j * k + p]);
    }
}

void aio_bf16_select(const uint16_t *packed, long k, const int64_t *rows, long count, uint16_t *out) {
    long kp = aio_bf16_padded_k(k);
    memset(out, 0, (size_t)(aio_q_padded_rows(count) * kp) * sizeof *out);
    for (long i = 0; i < count; i++) {
        const uint16_t *src = packed + (rows[i] / PANEL) * PANEL * kp + (rows[i] % PANEL) * 2;
        uint16_t *dst = out + (i / PANEL) * PANEL * kp + (i % PANEL) * 2;
        for (long g = 0; g < kp / 2; g++) memcpy(dst + g * PANEL * 2, src + g * PANEL * 2, 4);
    }
}

void aio_bf16_convert_rows(const float *x, long ldx, long m, long k, uint16_t *xb) {
    long kp = aio_bf16_padded_k(k);
    for (long i = 0; i < m; i++) {
        for (long p = 0; p < k; p++) xb[i * kp + p] = to_bf16(x[i * ldx + p]);
        for (long p = k; p < kp; p++) xb[i * kp + p] = 0;
    }
}

/* Portable: the pair products in float32 (bf16 -> float is exact), one row at a time. */
AIO_CLONES static void bf16_cols_portable(const uint16_t *xb, long m, long kp, const uint16_t *packed,
                                          const float *bias, float *out, long ldo, long c, long w) {
    const uint16_t *panel = packed + (c / PANEL) * PANEL * kp;
    for (long i = 0; i < m; i++) {
        float acc[PANEL] = {0};
        for (long g = 0; g < kp / 2; g++) {
            float x0 = from_bf16(xb[i * kp + 2 * g]), x1 = from_bf16(xb[i * kp + 2 * g + 1]);
            const uint16_t *wg = panel + g * PANEL * 2;
            for (int j = 0; j < PANEL; j++) acc[j] += x0 * from_bf16(wg[2 * j]) + x1 * from_bf16(wg[2 * j + 1]);
        }
        for (long j = 0; j < w; j++) out[i * ldo + j] = bias ? acc[j] + bias[j] : acc[j];
    }
}

#ifdef AIO_X86
AIO_TBF16 static inline __attribute__((always_inline)) void bf16_tile_512(const uint16_t *xb, long kp,
                                                                         const uint16_t *panel, int mr,
                                                                         const float *bias, float *out,
                                                                         long ldo, long w) {
    __m512 acc[MR512][4];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
    for (long g = 0; g < kp / 2; g++) {
        const uint16_t *wg = panel + g * PANEL * 2;
        __m512bh wv[4];
        for (int v = 0; v < 4; v++) {
            wv[v] = (__m512bh)_mm512_loadu_si512(wg + 32 * v);
            _mm_prefetch((const char *)(wg + 32 * v) + AIO_Q_STREAM_PREFETCH, _MM_HINT_T0);
        }
        for (int i = 0; i < mr; i++) {
            int32_t pair;
            memcpy(&pair, xb + i * kp + 2 * g, 4);
            __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
            for (int v = 0; v < 4; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], xv, wv[v]);
        }
    }
    for (int v = 0; v < 4 && 16 * v < w; v++) {
        long left = w - 16 * v;
        __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + 16 * v) : _mm512_setzero_ps();
        for (int i = 0; i < mr; i++) _mm512_mask_storeu_ps(out + i * ldo + 16 * v, mask, _mm512_add_ps(acc[i][v], bv));
    }
}

AIO_TBF16 static void bf16_cols_512(const uint16_t *xb, long m, long kp, const uint16_t *packed,
                                    const float *bias, float *out, long ldo, long c, long w) {
    const uint16_t *panel = packed + (c / PANEL) * PANEL * kp;
    const float *b = bias ? bias + c : NULL;
    for (long i = 0; i < m; i += MR512) {
        const uint16_t *x = xb + i * kp;
        float *o = out + i * ldo + c;
        switch (m - i < MR512 ? m - i : MR512) {
        case 1: bf16_tile_512(x, kp, panel, 1, b, o, ldo, w); break;
        case 2: bf16_tile_512(x, kp, panel, 2, b, o, ldo, w); break;
        case 3: bf16_tile_512(x, kp, panel, 3, b, o, ldo, w); break;
        case 4: bf16_tile_512(x, kp, panel, 4, b, o, ldo, w); break;
        case 5: bf16_tile_512(x, kp, panel, 5, b, o, ldo, w); break;
        default: bf16_tile_512(x, kp, panel, 6, b, o, ldo, w); break;
        }
    }
}
#endif

void aio_bf16_linear_cols(const uint16_t *xb, long m, long k, const uint16_t *packed, const float *bias,
                          int act, const float *residual, float *out, long ldo, long c0, long c1) {
    long kp = aio_bf16_padded_k(k);
    int isa = aio_q_bf16_isa();
    for (long c = c0; c < c1; c += PANEL) {
        long w = c1 - c < PANEL ? c1 - c : PANEL;
#ifdef AIO_X86
        if (isa == AIO_ISA_AVX512)
            bf16_cols_512(xb, m, kp, packed, bias, out, ldo, c, w);
        else
#endif
            bf16_cols_portable(xb, m, kp, packed, bias ? bias + c : NULL, out + c, ldo, c, w);
        aio_q_finish_rows(out + c, ldo, residual ? residual + c : NULL, m, w, act);
    }
    (void)isa;
}
