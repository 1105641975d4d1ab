"""CUDA C source of the custom kernels, compiled lazily (NVRTC) once per element type and device.

Design:
- One source; `_PREFIX` makes it a float16, float32 or float64 module by defining T (the element
  type), acc_t (the arithmetic type: float, or double for float64) and ld/st (T <-> acc_t). float16
  is stored as raw `unsigned short` and converted with PTX `cvt`, so no CUDA header (cuda_fp16.h)
  has to be found at run time.
- Row kernels (softmax, norms, argmax) run one block per row: strided loops over the row, then a
  warp-shuffle + shared-memory reduction that hands every thread the result. Norm statistics are
  summed in double (cheap next to the memory traffic), so E[s^2] - mean^2 loses nothing for
  float inputs and one pass over the row suffices.
- Elementwise kernels use a grid-stride loop with 64-bit indices.
- RawKernel ignores strides: callers pass C-contiguous arrays. Scalars go as numpy scalars of the
  exact C type (`int` <- int32, `long long` <- int64, `double` <- float64). A pointer that a flag
  disables is never read, so callers pass any array for it (RawKernel has no reliable NULL).
- bfloat16 weights: `to_bf16` and `embedding_bf16` read and write bf16 bits (unsigned short) and
  float32 whatever T is; callers launch them from the float32 module.
- Kernels run on the current CuPy stream, so each worker thread's `with stream:` applies.
"""

from __future__ import annotations

import threading

import cupy
import numpy as np

_PREFIX = {
    np.dtype(np.float32): r"""
typedef float T;
typedef float acc_t;
__device__ __forceinline__ acc_t ld(T v) { return v; }
__device__ __forceinline__ T st(acc_t v) { return v; }
""",
    np.dtype(np.float64): r"""
typedef double T;
typedef double acc_t;
__device__ __forceinline__ acc_t ld(T v) { return v; }
__device__ __forceinline__ T st(acc_t v) { return v; }
""",
    np.dtype(np.float16): r"""
typedef unsigned short T;  // IEEE binary16 bits
typedef float acc_t;
__device__ __forceinline__ acc_t ld(T v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
    return f;
}
__device__ __forceinline__ T st(acc_t v) {
    T h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
""",
}

_SOURCE = r"""
#define AIO_INF __int_as_float(0x7f800000)
#define AIO_FULL_MASK 0xffffffffu

struct SumOp { template <typename R> __device__ R operator()(R a, R b) const { return a + b; } };
struct MaxOp {
    template <typename R> __device__ R operator()(R a, R b) const { return a > b ? a : b; }
};

// v reduced over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
template <typename R, typename Op>
__device__ R block_reduce(R v, Op op, R identity) {
    static __shared__ R partial[32];  // one array per instantiation of R
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(AIO_FULL_MASK, v, o));
    __syncthreads();  // the previous call's readers are done with `partial`
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? partial[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(AIO_FULL_MASK, v, o));
    return v;
}

// Activation codes as aiotranslate.ops.reference.ACT_*: 0 none, 1 relu, 2 gelu (erf),
// 3 gelu_tanh = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))), 4 silu = v / (1 + exp(-v)).
__device__ __forceinline__ acc_t activate(acc_t v, int act) {
    switch (act) {
    case 1: return v > (acc_t)0 ? v : (acc_t)0;
    case 2: return (acc_t)0.5 * v * ((acc_t)1 + erf(v * (acc_t)0.70710678118654752));
    case 3: return (acc_t)0.5 * v
                   * ((acc_t)1 + tanh((acc_t)0.79788456080286536 * (v + (acc_t)0.044715 * v * v * v)));
    case 4: return v / ((acc_t)1 + exp(-v));
    default: return v;
    }
}

// softmax_rows: one block per row of x (R, n); z = scale * x + mask[row % mask_rows] (mask_rows 0:
// no mask). Columns >= limit are masked, limit = min(n, lengths[row / rows_per_length] if
// rows_per_length > 0, n - causal_q + row % causal_q + 1 if causal_q > 0). Writes softmax(z), or
// log_softmax(z) with log_out; a row whose visible sum is 0 is all 0 (log: all -inf), never NaN.
// out may be x: each element is read before the same thread writes it.
__device__ __forceinline__ acc_t logit(const T* xr, const T* mr, int i, acc_t scale) {
    acc_t z = scale * ld(xr[i]);
    if (mr) z += ld(mr[i]);
    return z;
}

extern "C" __global__ void softmax_rows(const T* x, const T* mask, const int* lengths, T* out, int n,
                                        int mask_rows, int rows_per_length, int causal_q,
                                        double scale_d, int log_out) {
    const long long row = blockIdx.x;
    const T* xr = x + row * n;
    const T* mr = mask_rows > 0 ? mask + (row % mask_rows) * n : nullptr;
    T* yr = out + row * n;
    int limit = n;
    if (rows_per_length > 0) limit = min(limit, lengths[row / rows_per_length]);
    if (causal_q > 0) limit = min(limit, n - causal_q + (int)(row % causal_q) + 1);
    const acc_t scale = (acc_t)scale_d;

    acc_t m = -AIO_INF;
    for (int i = threadIdx.x; i < limit; i += blockDim.x) m = fmax(m, logit(xr, mr, i, scale));
    m = block_reduce(m, MaxOp(), (acc_t)-AIO_INF);
    const acc_t shift = fabs(m) < AIO_INF ? m : (acc_t)0;  // all masked: exp(-inf - 0) = 0

    acc_t sum = 0;
    for (int i = threadIdx.x; i < limit; i += blockDim.x) sum += exp(logit(xr, mr, i, scale) - shift);
    sum = block_reduce(sum, SumOp(), (acc_t)0);
    const bool visible = sum > (acc_t)0;
    const acc_t log_sum = log(sum);

    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        acc_t r = log_out ? (acc_t)-AIO_INF : (acc_t)0;
        if (i < limit && visible) {
            const acc_t z = logit(xr, mr, i, scale) - shift;
            r = log_out ? z - log_sum : exp(z) / sum;
        }
        yr[i] = st(r);
    }
}

// norm_rows: one block per row of x (R, c). s = x, or s = residual + x (summed in double), written
// back into residual. rms: y = s / sqrt(mean(s^2) + eps) * gamma; else
// y = (s - mean) / sqrt(var + eps) * gamma (+ beta if has_beta). out may be x.
__device__ __forceinline__ double norm_input(const T* xr, const T* rr, int i) {
    double s = (double)ld(xr[i]);
    if (rr) s += (double)ld(rr[i]);
    return s;
}

extern "C" __global__ void norm_rows(const T* x, T* residual, const T* gamma, const T* beta, T* out,
                                     int c, int has_residual, int has_beta, int rms, double eps) {
    const long long row = blockIdx.x;
    const T* xr = x + row * c;
    T* rr = has_residual ? residual + row * c : nullptr;
    T* yr = out + row * c;

    double sum = 0.0, squares = 0.0;
    for (int i = threadIdx.x; i < c; i += blockDim.x) {
        const double s = norm_input(xr, rr, i);
        sum += s;
        squares += s * s;
    }
    sum = block_reduce(sum, SumOp(), 0.0);
    squares = block_reduce(squares, SumOp(), 0.0);
    const double mean = rms ? 0.0 : sum / c;
    const double var = rms ? squares / c : fmax(squares / c - mean * mean, 0.0);
    const acc_t inv_std = (acc_t)(1.0 / sqrt(var + eps));

    for (int i = threadIdx.x; i < c; i += blockDim.x) {
        const double s = norm_input(xr, rr, i);  // same thread, same i: read before written below
        acc_t y = (acc_t)(s - mean) * inv_std * ld(gamma[i]);
        if (has_beta) y += ld(beta[i]);
        if (rr) rr[i] = st((acc_t)s);
        yr[i] = st(y);
    }
}

// epilogue: out[i] = act(x[i] + bias[i % c]) + residual[i] over x (total / c, c); bias and
// residual only when their flags are set. out may be x (linear runs it in place on the GEMM output).
extern "C" __global__ void epilogue(const T* x, const T* bias, const T* residual, T* out,
                                    long long total, int c, int has_bias, int has_residual, int act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        acc_t v = ld(x[i]);
        if (has_bias) v += ld(bias[i % c]);
        v = activate(v, act);
        if (has_residual) v += ld(residual[i]);
        out[i] = st(v);
    }
}

// swiglu: out (R, f) = silu(x[:, :f]) * x[:, f:] for x (R, 2f); total = R * f.
extern "C" __global__ void swiglu(const T* x, T* out, long long total, int f) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long r = i / f, j = i % f;
        const acc_t gate = ld(x[2 * f * r + j]), up = ld(x[2 * f * r + f + j]);
        out[i] = st(gate / ((acc_t)1 + exp(-gate)) * up);
    }
}

// rotary: in place on x (N, heads, d); pair p < r2 of every head of token n turns by the angle of
// positions[n]: half-split pairs (p, p + r2), interleaved pairs (2p, 2p + 1); features from 2 r2
// on pass through. cos_t, sin_t: float32 (P, r2). total = N * heads * r2.
extern "C" __global__ void rotary(T* x, const int* positions, const float* cos_t, const float* sin_t,
                                  long long total, int heads, int d, int r2, int interleaved) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long head = i / r2;
        const int p = (int)(i % r2);
        const long long angle = (long long)positions[head / heads] * r2 + p;
        const acc_t c = (acc_t)cos_t[angle], s = (acc_t)sin_t[angle];
        T* xh = x + head * d;
        const int ia = interleaved ? 2 * p : p, ib = interleaved ? 2 * p + 1 : p + r2;
        const acc_t a = ld(xh[ia]), b = ld(xh[ib]);
        xh[ia] = st(a * c - b * s);
        xh[ib] = st(b * c + a * s);
    }
}

// embedding: out (N, c) = table[ids[n]] * scale (product in double); ids already checked in range.
extern "C" __global__ void embedding(const int* ids, const T* table, T* out, long long total, int c,
                                     double scale) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / c, j = i % c;
        out[i] = st((acc_t)((double)ld(table[(long long)ids[n] * c + j]) * scale));
    }
}

// bfloat16 weights (compute_type "bfloat16"): a bf16 value is the upper half of a float32, kept as
// its raw bits in unsigned short (no cuda_bf16.h needed), whatever T the module is built for.
// to_bf16 rounds to nearest even as models.device_bf16.bf16_bits does on the host; a NaN stays a
// (quiet) NaN of the same sign instead of rounding into inf.
__device__ __forceinline__ unsigned short bf16_from_float(float v) {
    const unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

extern "C" __global__ void to_bf16(const float* x, unsigned short* out, long long total) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = bf16_from_float(x[i]);
}

// embedding_bf16: out (N, c) float32 = table[ids[n]] * scale for a bf16 table (V, c) (product in
// double, as `embedding`); ids already checked in range.
extern "C" __global__ void embedding_bf16(const int* ids, const unsigned short* table, float* out,
                                          long long total, int c, double scale) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / c, j = i % c;
        const float v = __uint_as_float((unsigned int)table[(long long)ids[n] * c + j] << 16);
        out[i] = (float)((double)v * scale);
    }
}

// argmax_rows: one block per row of x (R, n), n > 0 -> int32 index of the maximum. NaN counts as
// -inf; ties go to the lowest index (a row of NaN and -inf gives 0).
__device__ __forceinline__ void keep_best(acc_t& best, int& arg, acc_t v, int i) {
    if (v > best || (v == best && i < arg)) {
        best = v;
        arg = i;
    }
}

extern "C" __global__ void argmax_rows(const T* x, int* out, int n) {
    __shared__ acc_t best_of_warp[32];
    __shared__ int arg_of_warp[32];
    const T* xr = x + (long long)blockIdx.x * n;
    acc_t best = -AIO_INF;
    int arg = n;  // no index yet: loses every tie against a real one
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const acc_t v = ld(xr[i]);
        keep_best(best, arg, v == v ? v : (acc_t)-AIO_INF, i);
    }
    for (int o = 16; o > 0; o >>= 1) {
        const acc_t v = __shfl_xor_sync(AIO_FULL_MASK, best, o);
        const int i = __shfl_xor_sync(AIO_FULL_MASK, arg, o);
        keep_best(best, arg, v, i);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        best_of_warp[warp] = best;
        arg_of_warp[warp] = arg;
    }
    __syncthreads();
    if (warp == 0) {
        const bool has = lane < (int)(blockDim.x >> 5);
        best = has ? best_of_warp[lane] : (acc_t)-AIO_INF;
        arg = has ? arg_of_warp[lane] : n;
        for (int o = 16; o > 0; o >>= 1) {
            const acc_t v = __shfl_xor_sync(AIO_FULL_MASK, best, o);
            const int i = __shfl_xor_sync(AIO_FULL_MASK, arg, o);
            keep_best(best, arg, v, i);
        }
        if (lane == 0) out[blockIdx.x] = arg;
    }
}
"""

_lock = threading.Lock()
_modules: dict[np.dtype, cupy.RawModule] = {}
_functions: dict[tuple[np.dtype, str, int], cupy.RawKernel] = {}

# Elementwise launches: 256 threads, at most this many blocks (the grid-stride loop does the rest).
_FLAT_THREADS = 256
_FLAT_MAX_BLOCKS = 4096


def source(dtype) -> str:
    """The full CUDA source of the module for dtype (float16, float32 or float64)."""
    return _PREFIX[np.dtype(dtype)] + _SOURCE


def kernel(name: str, dtype) -> cupy.RawKernel:
    """Kernel `name` of the dtype's module on the current device; the first call compiles it."""
    dtype = np.dtype(dtype)
    key = (dtype, name, cupy.cuda.runtime.getDevice())
    fn = _functions.get(key)
    if fn is None:
        with _lock:  # one compile per module, even when worker threads start together
            if dtype not in _modules:
                _modules[dtype] = cupy.RawModule(code=source(dtype))
            fn = _functions[key] = _modules[dtype].get_function(name)
    return fn


def row_threads(n: int) -> int:
    """Threads of a one-block-per-row launch: about 8 elements each, a power of two in [32, 1024]."""
    threads = 32
    while threads < 1024 and threads * 8 < n:
        threads *= 2
    return threads


def launch_rows(name: str, dtype, rows: int, n: int, args: tuple) -> None:
    """Run row kernel `name` with one block for each of `rows` rows of length n."""
    if rows:
        kernel(name, dtype)((rows,), (row_threads(n),), args)


def launch_flat(name: str, dtype, total: int, args: tuple) -> None:
    """Run elementwise kernel `name` over `total` elements (grid-stride loop)."""
    if total:
        blocks = min(-(-total // _FLAT_THREADS), _FLAT_MAX_BLOCKS)
        kernel(name, dtype)((blocks,), (_FLAT_THREADS,), args)
