"""Decoder-only language models (GPT-2, Llama, Mistral, Qwen2, Qwen3): `DecoderOnlyModel` and its
per-sequence `DecoderOnlyState`, implementing the `base.DecoderModel` / `base.DecoderState` contract.

One forward pass serves prefill and decoding alike: `decode(state, ids (B, T), lengths)` appends
lengths[b] tokens to row b (a whole prompt, or one token per step) and returns the logits after each
row's last token, or all of them (B, T, V) for scoring; a ragged call runs compact (`TokenBatch.compact`:
no work for the padded slots of a batch of prompts). Blocks are pre-norm:
    h = h + attention(norm1(h)); h = h + ffn(norm2(h)); logits = lm_head(final_norm(h))
with both residual adds fused into the output projections.

The state owns everything per sequence: one KV cache per layer, the per-row token counts, the last
hidden vector of each row (so a row given no token still has logits) and `n_threads`, the intra-op
thread count of every op call. It belongs to one worker thread; the model's weights are read-only and
shared by all states. What it is not: weight names or config keys (`gpt2.py`, `llama.py`).
"""

from __future__ import annotations

import numpy as np

from ..backends import get_array_module, place_like
from ..convert import GenerationConfig, HFConfig
from ..layers import Embedding, KVCache, Linear, PositionEmbedding, RowMoves, SelfAttention, TokenBatch


class DecoderLayer:
    """One pre-norm block; norms are LayerNorm or RMSNorm, ffn FeedForward or GatedFeedForward."""

    def __init__(self, norm1, attention: SelfAttention, norm2, ffn):
        self.norm1, self.attention, self.norm2, self.ffn = norm1, attention, norm2, ffn

    def __call__(self, h: np.ndarray, batch: TokenBatch, cache: KVCache, n_threads: int) -> np.ndarray:
        """h (B*T, C), the residual stream -> the stream after this block."""
        x = self.norm1(h, n_threads=n_threads)
        h = self.attention(x, batch, cache, residual=h, n_threads=n_threads)
        x = self.norm2(h, n_threads=n_threads)
        return self.ffn(x, residual=h, n_threads=n_threads)


class DecoderOnlyState:
    """KV caches and per-row progress of B sequences decoded together."""

    def __init__(self, caches: list[KVCache], batch_size: int, hidden_size: int, n_threads: int = 1, like=None):
        """like: an array of the model (its namespace and dtype: the device's); None: float32 numpy."""
        self.caches = caches
        self.n_threads = int(n_threads)
        self._lengths = np.zeros(batch_size, dtype=np.int32)  # host: the search reads it every step
        xp, dtype = (np, np.float32) if like is None else (get_array_module(like), like.dtype)
        self.last_hidden = xp.zeros((batch_size, hidden_size), dtype=dtype)  # after the final norm

    @property
    def batch_size(self) -> int:
        return len(self._lengths)

    @property
    def lengths(self) -> np.ndarray:
        """int32 (B,): tokens appended so far to each row (a copy)."""
        return self._lengths.copy()

    def reserve(self, n_tokens: int) -> None:
        """Room for n_tokens per row in every layer's cache."""
        used = int(self._lengths.max(initial=0))
        for cache in self.caches:
            cache.reserve(n_tokens, used)

    def select(self, rows) -> None:
        """Keep rows `rows` in that order (repeats allowed: beam expansion), in place."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"rows must be a 1-D integer array, got {rows.dtype} {rows.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= self.batch_size):
            raise ValueError(f"rows must lie in [0, {self.batch_size}), got {rows.tolist()}")
        used = int(self._lengths[rows].max(initial=0))
        moves = RowMoves(rows, self.batch_size)
        for cache in self.caches:
            cache.select(moves, used)
        self._lengths = self._lengths[rows]
        self.last_hidden = self.last_hidden[place_like(rows, self.last_hidden)]

    def keep_last(self, last, appended: np.ndarray) -> None:
        """Store last (B, C), the final hidden vector of this call, for the rows that appended tokens."""
        if appended.all():
            self.last_hidden[...] = last
        else:
            mask = place_like(appended, last)
            self.last_hidden[mask] = last[mask]

    def start_from(self, prefix: DecoderOnlyState) -> None:
        """Give every row of this state, which holds no token yet, the tokens of the one-row state
        `prefix` of the same model (a static prompt read once: api.static_prompts); `prefix` is
        only read."""
        if self._lengths.any() or prefix.batch_size != 1:
            raise ValueError("start_from needs an empty state and a one-row prefix state")
        n_tokens = int(prefix._lengths[0])
        self.reserve(n_tokens)
        for cache, theirs in zip(self.caches, prefix.caches, strict=True):
            cache.fill(theirs, n_tokens)
        self._lengths[:] = n_tokens
        self.last_hidden[...] = prefix.last_hidden[:1]

    def extend(self, other: DecoderOnlyState) -> None:
        """Append the rows of `other` (a state of the same model) after ours, in place: sequences
        joining a running batch (continuous batching). `other` must not be used afterwards."""
        used, other_used = int(self._lengths.max(initial=0)), int(other._lengths.max(initial=0))
        for cache, theirs in zip(self.caches, other.caches, strict=True):
            cache.extend(theirs, used, other_used)
        self._lengths = np.concatenate([self._lengths, other._lengths])
        self.last_hidden = get_array_module(self.last_hidden).concatenate([self.last_hidden, other.last_hidden])


class DecoderOnlyModel:
    """Embeddings (+ learned positions), pre-norm blocks, final norm and LM head."""

    def __init__(
        self,
        *,
        embedding: Embedding,
        layers: list[DecoderLayer],
        final_norm,
        lm_head: Linear,
        positions: PositionEmbedding | None = None,
        config: HFConfig | None = None,
        generation_config: GenerationConfig | None = None,
        int8_weights: str = "int8",
    ):
        self.embedding, self.positions, self.layers = embedding, positions, layers
        self.final_norm, self.lm_head = final_norm, lm_head
        self.config = config
        self.generation_config = generation_config or GenerationConfig()
        self.int8_weights = int8_weights  # what compute type int8 makes of the linears (api.compute_type)

    @property
    def vocab_size(self) -> int:
        return self.lm_head.out_features

    @property
    def max_positions(self) -> int | None:
        """Hard limit on tokens per sequence (learned position table), None with rotary positions."""
        return None if self.positions is None else self.positions.max_positions

    def new_state(self, batch_size: int, n_threads: int = 1, capacity: int = 0) -> DecoderOnlyState:
        """An empty state for batch_size sequences; capacity preallocates that many cache slots per row
        (a prompt plus the expected generation length saves regrowing)."""
        if batch_size < 0 or n_threads < 1:
            raise ValueError(f"need batch_size >= 0 and n_threads >= 1, got {batch_size}, {n_threads}")
        like = self.embedding.table  # the device and dtype of the weights
        caches = [layer.attention.new_cache(batch_size, capacity, like) for layer in self.layers]
        return DecoderOnlyState(caches, batch_size, self.embedding.dim, n_threads, like)

    def decode(self, state: DecoderOnlyState, ids, lengths=None, *, all_logits: bool = False) -> np.ndarray:
        """Append lengths[b] tokens of ids (B, T) to row b; logits (B, V), or (B, T, V) with all_logits.

        Validation happens before anything changes, so a refused call leaves the state as it was."""
        ids, counts = self._check(state, ids, lengths)
        bsz, t = ids.shape
        batch = TokenBatch(state._lengths, counts, t)
        limit = self.max_positions
        if limit is not None and int(batch.key_lengths.max(initial=0)) > limit:
            raise ValueError(f"a row would reach {int(batch.key_lengths.max())} tokens, past the model's {limit}")
        n_threads = state.n_threads
        state.reserve(batch.span)

        valid = np.arange(t)[None, :] < counts[:, None]  # (B, T)
        batch = batch.compact()  # a ragged call: no work for padding
        h = self.embedding(batch.take(np.where(valid, ids, 0).reshape(-1)), n_threads=n_threads)  # (B*T or N, C)
        if self.positions is not None:
            h += self.positions(batch.take(batch.positions), n_threads=n_threads)
        for layer, cache in zip(self.layers, state.caches):
            h = layer(h, batch, cache, n_threads)

        last_slots = place_like(batch.last_slots, h)
        if all_logits:
            x = self.final_norm(h, n_threads=n_threads)  # (B*T, C)
            last = x[last_slots]
        else:
            x = last = self.final_norm(h[last_slots], n_threads=n_threads)  # (B, C)
        state.keep_last(last, counts > 0)
        state._lengths = batch.key_lengths
        if all_logits:
            logits = self.lm_head(x, n_threads=n_threads)
            return (logits if batch.rows is None else batch.to_grid(logits)).reshape(bsz, t, -1)
        return self.lm_head(state.last_hidden, n_threads=n_threads)

    def _check(self, state: DecoderOnlyState, ids, lengths) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a 2-D integer array (B, T), got {ids.dtype} {ids.shape}")
        bsz, t = ids.shape
        if bsz != state.batch_size or t == 0:
            raise ValueError(f"ids {ids.shape} must have the state's {state.batch_size} rows and T >= 1")
        counts = np.full(bsz, t, dtype=np.int32) if lengths is None else np.asarray(lengths)
        if counts.shape != (bsz,) or not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(f"lengths must be an integer array ({bsz},), got {counts.dtype} {counts.shape}")
        if bsz and (counts.min() < 0 or counts.max() > t):
            raise ValueError(f"lengths must lie in [0, {t}], got {counts.tolist()}")
        valid_ids = ids[np.arange(t)[None, :] < counts[:, None]]
        if valid_ids.size and (valid_ids.min() < 0 or valid_ids.max() >= self.embedding.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.embedding.vocab_size})")
        return ids, counts.astype(np.int32)
