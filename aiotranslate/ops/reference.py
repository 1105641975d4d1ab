"""Plain numpy implementation of every op: the test oracle and the fallback without the extension.

Each function here defines the contract of the op of the same name in `aiotranslate.ops`: shapes,
masking rules, edge cases. They favour clarity over speed and compute reductions in float64.
Shape names: R rows, N/K/C columns, B batch, H heads, D head dim, V vocab.
"""

from __future__ import annotations

import math

import numpy as np

# Activation codes shared with the native kernels (native/common.pxd).
ACT_NONE, ACT_RELU, ACT_GELU, ACT_GELU_TANH, ACT_SILU = 0, 1, 2, 3, 4
ACTIVATIONS = {
    None: ACT_NONE,
    "none": ACT_NONE,
    "relu": ACT_RELU,
    "gelu": ACT_GELU,
    "gelu_tanh": ACT_GELU_TANH,
    "gelu_new": ACT_GELU_TANH,
    "gelu_pytorch_tanh": ACT_GELU_TANH,
    "silu": ACT_SILU,
    "swish": ACT_SILU,
}


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf ufunc; math.erf is exact to double precision.
    return np.vectorize(math.erf, otypes=[np.float64])(x) if x.size else x.astype(np.float64)


def activation(x: np.ndarray, act: int) -> np.ndarray:
    """Apply activation code `act` elementwise (float64 math, input dtype out)."""
    v = x.astype(np.float64)
    if act == ACT_NONE:
        r = v
    elif act == ACT_RELU:
        r = np.maximum(v, 0.0)
    elif act == ACT_GELU:
        r = 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)))
    elif act == ACT_GELU_TANH:
        r = 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))
    elif act == ACT_SILU:
        r = v / (1.0 + np.exp(-v))
    else:
        raise ValueError(f"unknown activation code {act}")
    return r.astype(x.dtype)


def swiglu(x: np.ndarray) -> np.ndarray:
    """(R, 2F) -> (R, F): silu(x[:, :F]) * x[:, F:] (gate half first, then up half)."""
    f = x.shape[-1] // 2
    gate = x[..., :f].astype(np.float64)
    return (gate / (1.0 + np.exp(-gate)) * x[..., f:]).astype(x.dtype)


def linear(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    act: int = ACT_NONE,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """y = act(x @ w.T + bias) + residual.  x (M, K), w (N, K) as torch.nn.Linear stores it -> (M, N)."""
    y = x.astype(np.float64) @ w.astype(np.float64).T
    if bias is not None:
        y += bias
    y = activation(y, act).astype(np.float64)
    if residual is not None:
        y += residual
    return y.astype(x.dtype)


def batched_matmul(a: np.ndarray, b: np.ndarray, trans_b: bool = False, alpha: float = 1.0) -> np.ndarray:
    """alpha * a @ b (or a @ b^T) over a leading batch axis.

    a (G, M, K); b (G, K, N), or (G, N, K) with trans_b -> (G, M, N).  In attention G = B*H:
    scores = Q @ K^T (trans_b, alpha = 1/sqrt(D)), context = P @ V.
    """
    bb = np.swapaxes(b, -1, -2) if trans_b else b
    return (alpha * (a.astype(np.float64) @ bb.astype(np.float64))).astype(a.dtype)


def softmax(
    x: np.ndarray,
    scale: float = 1.0,
    mask: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    causal_q: int = 0,
    log: bool = False,
) -> np.ndarray:
    """softmax (or log_softmax) over the last axis of x (R, N) of z = scale * x + mask.

    mask: additive (Rm, N); row r uses mask row r % Rm (Rm divides R), -inf allowed.
    lengths: int32 (G,), G divides R; row r only sees columns [0, lengths[r // (R // G)]).
    causal_q: if > 0, rows are queries of a block of causal_q positions aligned to the end of the
      keys: row r (query q = r % causal_q) sees columns [0, N - causal_q + q + 1).
    Masked columns get probability 0 (log: -inf). A row with nothing visible is all 0 (log: all -inf),
    never NaN. NaN in, NaN out: a NaN or +inf among a row's visible z makes all its visible outputs NaN
    (as the plain formula would give; the masked columns stay 0 / -inf).
    """
    r, n = x.shape
    z = scale * x.astype(np.float64)
    if mask is not None:
        z = z + np.tile(mask.astype(np.float64), (r // mask.shape[0], 1))
    limit = np.full(r, n, dtype=np.int64)
    if lengths is not None and r:
        limit = np.minimum(limit, np.repeat(np.asarray(lengths, dtype=np.int64), r // len(lengths)))
    if causal_q > 0:
        limit = np.minimum(limit, n - causal_q + np.arange(r) % causal_q + 1)
    visible = np.arange(n)[None, :] < limit[:, None]
    z = np.where(visible, z, -np.inf)
    with np.errstate(invalid="ignore"):
        m = np.max(z, axis=-1, keepdims=True, initial=-np.inf)  # NaN if the row holds one
        poisoned = np.isnan(m) | (m == np.inf)
        m = np.where(np.isfinite(m), m, 0.0)
        e = np.exp(z - m)
        s = e.sum(axis=-1, keepdims=True)
        if log:
            out = np.where(s > 0, z - m - np.log(np.where(s > 0, s, 1.0)), -np.inf)
        else:
            out = np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)
    return np.where(poisoned & visible, np.nan, out).astype(x.dtype)


def attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    scale: float,
    lengths: np.ndarray | None = None,
    causal_q: int = 0,
) -> np.ndarray:
    """softmax(scale * q @ k^T) @ v for q (G, M, D), k and v (G, N, D) -> (G, M, D).

    The scores, viewed as (G*M, N) rows, are masked as `softmax` masks them with lengths and causal_q:
    a query that sees no key gets zeros. The values of keys that no query of a group sees do not
    matter (the kernel does not read them); here they are multiplied by 0, so keep them finite.
    """
    g, m, n = q.shape[0], q.shape[1], k.shape[1]
    scores = batched_matmul(q, k, trans_b=True).reshape(g * m, n)
    probs = softmax(scores, scale, lengths=lengths, causal_q=causal_q).reshape(g, m, n)
    return batched_matmul(probs, v)


def logsumexp(x: np.ndarray) -> np.ndarray:
    """float64 (R,): log(sum_j exp(x[r, j])) of each row of x (R, N); -inf for an empty or all -inf
    row, NaN for a row holding a NaN, else +inf for one holding a +inf."""
    z = x.astype(np.float64)
    m = np.max(z, axis=-1, initial=-np.inf)
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return shift + np.log(np.exp(z - shift[:, None]).sum(axis=-1))


def layer_norm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray | None = None,
    eps: float = 1e-5,
    residual: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(x - mean) / sqrt(var + eps) * gamma + beta over the last axis of (R, C).

    With residual: s = residual + x is normalised instead and also returned (the updated
    residual stream), as the fused kernel writes it back into `residual`.
    Returns (normalised, s or None).
    """
    s = x.astype(np.float64) if residual is None else residual.astype(np.float64) + x
    mean = s.mean(axis=-1, keepdims=True)
    var = ((s - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (s - mean) / np.sqrt(var + eps) * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype), (None if residual is None else s.astype(x.dtype))


def rms_norm(
    x: np.ndarray,
    gamma: np.ndarray,
    eps: float = 1e-6,
    residual: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """x / sqrt(mean(x^2) + eps) * gamma over the last axis of (R, C); residual as in layer_norm."""
    s = x.astype(np.float64) if residual is None else residual.astype(np.float64) + x
    y = s / np.sqrt((s * s).mean(axis=-1, keepdims=True) + eps) * gamma
    return y.astype(x.dtype), (None if residual is None else s.astype(x.dtype))


def rotary_tables(inv_freq: np.ndarray, n_positions: int, attention_scaling: float = 1.0):
    """cos and sin tables (P, R2) for rotary embeddings: angle[p, i] = p * inv_freq[i].

    Computed in float32 exactly as transformers does (outer product in float32, then cos/sin),
    so logits match it closely; attention_scaling multiplies both (YaRN / LongRoPE).
    """
    t = np.arange(n_positions, dtype=np.float32)
    angles = np.outer(t, inv_freq.astype(np.float32))
    return (np.cos(angles) * attention_scaling).astype(np.float32), (
        np.sin(angles) * attention_scaling
    ).astype(np.float32)


def rotary(
    x: np.ndarray, positions: np.ndarray, cos: np.ndarray, sin: np.ndarray, interleaved: bool = False
) -> np.ndarray:
    """Rotate the first 2*R2 features of every head of x (N, H, D) by the angle of positions[n].

    cos, sin: (P, R2) tables; positions int32 (N,) < P. Features past 2*R2 pass through.
    Half-split layout (Llama, GPT-NeoX): pairs (i, i + R2).  Interleaved (GPT-J): pairs (2i, 2i + 1).
    """
    r2 = cos.shape[1]
    out = x.astype(np.float64).copy()
    c = cos[positions].astype(np.float64)[:, None, :]  # (N, 1, R2)
    s = sin[positions].astype(np.float64)[:, None, :]
    if interleaved:
        a, b = out[..., 0 : 2 * r2 : 2].copy(), out[..., 1 : 2 * r2 : 2].copy()
        out[..., 0 : 2 * r2 : 2] = a * c - b * s
        out[..., 1 : 2 * r2 : 2] = b * c + a * s
    else:
        a, b = out[..., :r2].copy(), out[..., r2 : 2 * r2].copy()
        out[..., :r2] = a * c - b * s
        out[..., r2 : 2 * r2] = b * c + a * s
    return out.astype(x.dtype)


def sinusoidal_table(
    n_positions: int, dim: int, log_timescale_increment: float | None = None, offset: int = 0
) -> np.ndarray:
    """Sinusoidal position table (n_positions, dim): sin in the first half, cos in the second.

    Column i < dim/2 holds sin((p + offset) * exp(-i * inc)), column dim/2 + i the cos of the same angle.
    inc defaults to log(10000) / (dim / 2), i.e. 10000^(-2i/dim) as in transformers' Marian;
    Marian C++ and fairseq use log(10000) / (dim/2 - 1).
    """
    half = dim // 2
    # max(): with dim 0 there are no columns and inc does not matter.
    inc = math.log(10000.0) / max(half, 1) if log_timescale_increment is None else log_timescale_increment
    p = np.arange(offset, offset + n_positions, dtype=np.float64)[:, None]
    angles = p * np.exp(-inc * np.arange(half, dtype=np.float64))[None, :]
    table = np.zeros((n_positions, dim), dtype=np.float32)
    table[:, :half] = np.sin(angles)
    table[:, half : 2 * half] = np.cos(angles)
    return table


def embedding(ids: np.ndarray, table: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Rows of table (V, C) picked by ids (N,), times scale -> (N, C). Ids must be in [0, V)."""
    return (table[ids].astype(np.float64) * scale).astype(table.dtype)


def argmax(x: np.ndarray) -> np.ndarray:
    """Index of the largest value of each row of (R, N) as int32; ties go to the lowest index.

    NaN compares as smaller than everything (a NaN row gives index 0 only if all are NaN)."""
    z = np.where(np.isnan(x), -np.inf, x)
    return np.argmax(z, axis=-1).astype(np.int32)


def topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest values of each row of (R, N), sorted descending, and their int32 indices.

    Ties go to the lower index first (stable), as in argmax. 0 <= k <= N.
    """
    z = np.where(np.isnan(x), -np.inf, x)
    idx = np.argsort(-z, axis=-1, kind="stable")[:, :k].astype(np.int32)
    return np.take_along_axis(x, idx, axis=-1), idx


def quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization of each row of (R, K): q = rint(x * (127 / max|x|)), computed in
    float32, and scale = max|x| / 127, so x ~ scale * q. A zero row gets q = 0 and scale 0.
    Weights are quantized this way once at load, activations on every call."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=-1, initial=0).astype(np.float32)
    nonzero = amax > 0
    inv = np.where(nonzero, np.float32(127) / np.where(nonzero, amax, np.float32(1)), np.float32(0))
    q = np.rint(x * inv.astype(np.float32)[..., None]).astype(np.int8)
    return q, (amax / np.float32(127)).astype(np.float32)


def int8_matmul(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """s (M, K) @ q (N, K)^T for int8 operands, exactly, as int32 (M, N)."""
    return (s.astype(np.int64) @ q.astype(np.int64).T).astype(np.int32)


def int8_linear(
    x: np.ndarray,
    q: np.ndarray,
    scales: np.ndarray,
    bias: np.ndarray | None = None,
    act: int = ACT_NONE,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """`linear` with an int8 weight W = scales[:, None] * q (N, K) and x (M, K) quantized per row
    (`quantize_rows`): act(int8_matmul(s, q) * xs[:, None] * scales + bias) + residual, float32 out."""
    s, xs = quantize_rows(x)
    y = int8_matmul(s, q).astype(np.float64) * (xs.astype(np.float64)[:, None] * scales[None, :])
    if bias is not None:
        y += bias
    y = activation(y, act).astype(np.float64)
    if residual is not None:
        y += residual
    return y.astype(np.float32)


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as float32; NaN stays NaN."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16).astype(np.uint32)
    return np.where(np.isnan(x), x, rounded.view(np.float32)).astype(np.float32)


def bf16_linear(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    act: int = ACT_NONE,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """`linear` on x and w rounded to bfloat16 (the products are exact; sums in float64 here)."""
    return linear(bf16_round(x), bf16_round(w), bias, act, residual)
