"""Multi-head attention: `attend` (the scaled dot-product core), `SelfAttention` (decoder self-attention
over a KV cache, or encoder self-attention without one) and `CrossAttention` (over encoder memory).

Grouped-query attention without copying keys: the H query heads are grouped by the KV head they
share, r = H / H_kv per group (r = 1 plain multi-head, H_kv = 1 multi-query), and each group is one
matrix product, Q (B*H_kv, r*T, D) against K (B*H_kv, N, D), so r*T query rows share one key block.

Masking: keys past each row's length are cut by the softmax `lengths`; causality by `causal_q` when
every row's queries sit at the same key offset (a prompt, or one token per row: the common cases);
otherwise, or with a sliding window, rows are attended one by one (exact, slower, rare).

Head counts are read from the projections' sizes at each call (H_kv = qkv rows / ((r + 2) * D)), so a
tensor-parallel pass can hand a layer a shard of the heads without the layer knowing.
What it is not: positions (rotary is handed in), the cache's lifetime (kv_cache.py, the state).
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..backends import get_array_module, place_like, to_host
from .kv_cache import KVCache, TokenBatch
from .linear import Linear
from .norms import RMSNorm
from .positions import Rotary


def attend(
    q, k, v, key_lengths, *, scale, offsets=None, window=None, probs_out=None, n_keys=None, n_threads=1
) -> np.ndarray:
    """softmax(scale * Q K^T + masks) V for T queries per row.

    q: (B, H_kv, r, T, D) C-contiguous, query heads grouped by their KV head.
    k, v: (B, H_kv, N_max, D) (KV cache or projected memory; strided views are fine).
    key_lengths: int32 (B,): row b attends to its first key_lengths[b] keys.
    offsets: None for bidirectional attention (encoder, cross-attention); else causal, int32 (B,):
      query t of row b sits at key position offsets[b] + t and sees keys up to it.
    window: causal sliding window: a query at position p sees keys > p - window.
    probs_out: bidirectional only: zeroed (B, H_kv, r, T, max(key_lengths)) that receives the
      attention probabilities (alignments of cross-attention).
    n_keys: max(key_lengths), or causal max(offsets) + T, where the caller has it (TokenBatch.span).
    Returns the context (B*T, H*D); query slots past a row's valid ones hold zeros or finite junk.
    """
    b, h_kv, r, t, d = q.shape
    if probs_out is not None and offsets is not None:
        raise ValueError("probs_out is only available for bidirectional attention")
    xp = get_array_module(q)
    # A window only cuts keys once some row holds more than `window` of them.
    windowed = offsets is not None and window is not None and int(key_lengths.max(initial=0)) > window
    # Every row's queries at the same key offset (or a single query): one causal mask fits all rows.
    aligned = offsets is None or t == 1 or b == 0 or bool((offsets == offsets[0]).all())
    n = 0  # keys of the one block over all rows, when it fits
    if aligned and not windowed:
        if n_keys is not None:
            n = n_keys
        else:
            n = int(key_lengths.max(initial=0)) if offsets is None else int(offsets.max(initial=0)) + t
    if aligned and not windowed and n:  # the one block writes every slot
        out = ops.attention(
            q.reshape(b * h_kv, r * t, d),
            k[:, :, :n].reshape(b * h_kv, n, d),
            v[:, :, :n].reshape(b * h_kv, n, d),
            scale=scale,
            lengths=key_lengths,
            causal_q=0 if offsets is None else t,
            probs_out=None if probs_out is None else probs_out.reshape(b * h_kv, r * t, n),
            n_threads=n_threads,
        ).reshape(b, h_kv, r, t, d)
    else:
        out = xp.zeros((b, h_kv, r, t, d), dtype=q.dtype)  # slots no row fills read as zeros
    if not aligned or windowed:
        for i in range(b):  # causal, rows at different offsets or windowed: one row at a time
            start, n = int(offsets[i]), int(key_lengths[i])
            c = n - start  # valid queries of this row
            if c <= 0:
                continue
            mask = None
            if windowed:
                # Query j sits at start + j and sees keys > start + j - window.
                qpos = start + np.arange(c)[:, None]
                mask = place_like(np.where(np.arange(n)[None, :] > qpos - window, 0.0, -np.inf).astype(q.dtype), q)
            ctx = ops.attention(
                q[i, :, :, :c].reshape(h_kv, r * c, d),
                k[i, :, :n],
                v[i, :, :n],
                scale=scale,
                causal_q=c,
                mask=mask,
                n_threads=n_threads,
            )
            out[i, :, :, :c] = ctx.reshape(h_kv, r, c, d)
    return out.transpose(0, 3, 1, 2, 4).reshape(b * t, h_kv * r * d)  # (B, T, H_kv, r, D) -> (B*T, H*D)


class SelfAttention:
    """Self-attention with fused QKV projection: qkv (H*D + 2*H_kv*D, C) rows [Q; K; V], out (C, H*D).

    causal with a KVCache for decoders; causal=False and no cache for encoders. Optional: rotary
    positions, Qwen3-style RMS norms of each query and key head (before rotary), a sliding window."""

    def __init__(
        self,
        qkv: Linear,
        out: Linear,
        *,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        scale: float | None = None,
        causal: bool = True,
        rotary: Rotary | None = None,
        q_norm: RMSNorm | None = None,
        k_norm: RMSNorm | None = None,
        window: int | None = None,
    ):
        if n_heads % n_kv_heads:
            raise ValueError(f"{n_heads} query heads do not split into {n_kv_heads} KV-head groups")
        if qkv.out_features != (n_heads + 2 * n_kv_heads) * head_dim:
            raise ValueError(f"qkv has {qkv.out_features} outputs, expected ({n_heads} + 2*{n_kv_heads}) * {head_dim}")
        self.qkv, self.out = qkv, out
        self.group = n_heads // n_kv_heads  # r query heads per KV head
        self.head_dim = head_dim
        self.scale = head_dim**-0.5 if scale is None else float(scale)
        self.causal = causal
        self.rotary, self.q_norm, self.k_norm = rotary, q_norm, k_norm
        self.window = window

    @property
    def n_kv_heads(self) -> int:
        return self.qkv.out_features // ((self.group + 2) * self.head_dim)

    def new_cache(self, batch_size: int, capacity: int = 0, like=None) -> KVCache:
        """An empty cache in the namespace and dtype of array `like` (None: float32 numpy)."""
        return KVCache(batch_size, self.n_kv_heads, self.head_dim, capacity, like=like)

    def __call__(
        self, x: np.ndarray, batch: TokenBatch, cache: KVCache | None = None, *, residual=None, n_threads=1
    ) -> np.ndarray:
        """x (B*T, C) -> out(context) + residual, (B*T, C); for a compact batch, x and the result hold
        its valid slots only, (N, C). With a cache, it must hold room for max(offsets) + T tokens;
        the new keys and values are written into it."""
        bsz, t, d, r = batch.batch_size, batch.width, self.head_dim, self.group
        h_kv = self.n_kv_heads
        h = h_kv * r
        y = self.qkv(x, n_threads=n_threads)  # (B*T, (H + 2*H_kv) * D)
        xp = get_array_module(y)
        if batch.rows is not None:  # onto the grid: padded slots hold zeros, which no query attends
            y = batch.to_grid(y)
        q = xp.ascontiguousarray(y[:, : h * d]).reshape(bsz * t, h, d)
        k = xp.ascontiguousarray(y[:, h * d : (h + h_kv) * d]).reshape(bsz * t, h_kv, d)
        v = y[:, (h + h_kv) * d :].reshape(bsz, t, h_kv, d)
        if self.q_norm is not None:
            q = self.q_norm(q, n_threads=n_threads)
            k = self.k_norm(k, n_threads=n_threads)
        if self.rotary is not None:
            self.rotary(q, batch, n_threads=n_threads)
            self.rotary(k, batch, n_threads=n_threads)
        q = xp.ascontiguousarray(q.reshape(bsz, t, h_kv, r, d).transpose(0, 2, 3, 1, 4))  # (B, H_kv, r, T, D)
        k = k.reshape(bsz, t, h_kv, d)
        if cache is not None:
            cache.write(k, v, batch)
            keys, values, lengths, offsets = cache.k, cache.v, batch.key_lengths, batch.offsets
            n_keys = batch.span if self.causal else None
        else:
            keys = xp.ascontiguousarray(k.transpose(0, 2, 1, 3))  # (B, H_kv, T, D)
            values = xp.ascontiguousarray(v.transpose(0, 2, 1, 3))
            lengths, offsets = batch.counts, np.zeros_like(batch.counts)
            n_keys = None
        ctx = attend(
            q,
            keys,
            values,
            lengths,
            scale=self.scale,
            offsets=offsets if self.causal else None,
            window=self.window,
            n_keys=n_keys,
            n_threads=n_threads,
        )
        if batch.rows is not None:
            ctx = ctx[place_like(batch.rows, ctx)]
        return self.out(ctx, residual=residual, n_threads=n_threads)


class CrossAttention:
    """Attention of decoder queries over encoder memory: q (H*D, C), kv (2*H_kv*D, C) rows [K; V],
    out (C, H*D). The memory's keys and values are projected once per sequence (`project`) and kept
    by the decoder state."""

    def __init__(
        self, q: Linear, kv: Linear, out: Linear, *, n_heads: int, n_kv_heads: int, head_dim: int, scale=None
    ):
        if n_heads % n_kv_heads:
            raise ValueError(f"{n_heads} query heads do not split into {n_kv_heads} KV-head groups")
        if q.out_features != n_heads * head_dim or kv.out_features != 2 * n_kv_heads * head_dim:
            raise ValueError(f"q/kv sizes {q.out_features}/{kv.out_features} do not fit {n_heads}/{n_kv_heads} heads")
        self.q, self.kv, self.out = q, kv, out
        self.group = n_heads // n_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5 if scale is None else float(scale)

    def project(self, memory: np.ndarray, batch_size: int, *, n_threads=1) -> tuple[np.ndarray, np.ndarray]:
        """memory (B*S, C) -> keys and values, each (B, H_kv, S, D) C-contiguous."""
        d = self.head_dim
        y = self.kv(memory, n_threads=n_threads)  # (B*S, 2*H_kv*D)
        h_kv = y.shape[1] // (2 * d)
        y = y.reshape(batch_size, -1, 2, h_kv, d)  # (B, S, 2, H_kv, D)
        xp = get_array_module(y)
        k, v = (xp.ascontiguousarray(y[:, :, i].transpose(0, 2, 1, 3)) for i in (0, 1))
        return k, v

    def __call__(
        self,
        x: np.ndarray,
        memory: tuple[np.ndarray, np.ndarray],
        memory_lengths,
        *,
        group: int = 1,
        residual=None,
        probs=None,
        n_threads=1,
    ) -> np.ndarray:
        """x (B*T, C) queries; memory from `project`, (B / group, H_kv, S, D) keys and values, and
        memory_lengths int32 (B / group,): row b reads memory row b // group -> (B*T, C).
        probs: a zeroed (B, H, T, max(memory_lengths)) array that receives the attention
        probabilities (alignments), or None.

        The `group` rows sharing a memory row (the beams of one source) are one block of group*T
        queries against its keys: one product per source and head instead of one per row."""
        k, v = memory
        if probs is not None and group > 1:  # probs are laid out per row: give each row its own memory
            xp = get_array_module(k)
            k, v = xp.repeat(k, group, axis=0), xp.repeat(v, group, axis=0)
            memory_lengths = np.repeat(memory_lengths, group)
        bsz, h_kv, _, d = k.shape
        t = x.shape[0] // bsz  # query slots per memory row: (group, T) flattened, the rows' own order
        y = self.q(x, n_threads=n_threads)  # (B*T, H*D)
        q = get_array_module(y).ascontiguousarray(y.reshape(bsz, t, h_kv, self.group, d).transpose(0, 2, 3, 1, 4))
        lengths = np.ascontiguousarray(memory_lengths, dtype=np.int32)
        grouped = None if probs is None else probs.reshape(bsz, h_kv, self.group, t, -1)  # (B, H_kv, r, T, S)
        # All S memory slots as the keys' bound (no max over the lengths each step): the kernel reads each
        # block's visible keys only. probs are as wide as the longest memory row, which S may exceed.
        n_keys = None if probs is not None else k.shape[2]
        ctx = attend(q, k, v, lengths, scale=self.scale, probs_out=grouped, n_keys=n_keys, n_threads=n_threads)
        return self.out(ctx, residual=residual, n_threads=n_threads)


def with_alignments(cross: CrossAttention, keys, memory_lengths, batch_size: int, ids, lengths, decode):
    """A decoder call of batch_size rows with the alignments of its appended tokens:
    `decode(ids, lengths, probs)` runs the call, in which `cross` (the last layer's cross-attention,
    over memory whose keys are `keys`, (rows / group, H_kv, S, D)) fills `probs`. Returns (its result,
    float32 (B, T, S) on the host): head 0, the alignment head of CTranslate2 (alignment_layer=-1,
    alignment_heads=1) and of Marian's and OpenNMT's guided alignment; zero past each row's source
    and in the slots past its lengths[b] tokens."""
    ids = np.asarray(ids)
    _, h_kv, s, _ = keys.shape
    t = ids.shape[1] if ids.ndim == 2 else 0
    probs = get_array_module(keys).zeros(
        (batch_size, h_kv * cross.group, t, int(np.max(memory_lengths, initial=0))), dtype=keys.dtype
    )
    result = decode(ids, lengths, probs)
    counts = np.full(batch_size, t) if lengths is None else np.asarray(lengths)
    alignment = np.zeros((batch_size, t, s), dtype=np.float32)
    alignment[:, :, : probs.shape[3]] = to_host(probs[:, 0])
    alignment[np.arange(t)[None, :] >= counts[:, None]] = 0.0
    return result, alignment
