"""Where the tokens of one forward call go: `TokenBatch` (per-row offsets, counts and positions) and
`KVCache` (one attention layer's keys and values for B rows, preallocated and grown on demand).

A call appends up to T tokens to each of B rows, right-padded: row b holds `offsets[b]` tokens
already and appends `counts[b]` (0..T) of the T slots. Its token t sits at position
offsets[b] + t, so a ragged batch computes exactly what each row would alone. Padded slots get a
valid position (the row's last one) and their keys land past the row's length, where the next call
overwrites them and attention never looks.

What it is not: the owner of the cache's lifetime. A decoder state (models/) holds one KVCache per
layer, reserves room before a call and reorders rows with `select`; this module holds no thread or
model knowledge. Encoders use a TokenBatch with zero offsets and no cache.
"""

from __future__ import annotations

import numpy as np


class TokenBatch:
    """The geometry of one forward call over B rows of T token slots."""

    def __init__(self, offsets: np.ndarray, counts: np.ndarray, width: int):
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int32)  # (B,) tokens already held
        self.counts = np.ascontiguousarray(counts, dtype=np.int32)  # (B,) valid new tokens, <= width
        self.width = int(width)  # T
        if self.offsets.shape != self.counts.shape or self.offsets.ndim != 1:
            raise ValueError(f"offsets {self.offsets.shape} and counts {self.counts.shape} must be (B,)")
        if self.counts.size and (self.counts.min() < 0 or self.counts.max() > self.width):
            raise ValueError(f"counts must lie in [0, {self.width}], got {self.counts.tolist()}")
        self.key_lengths = self.offsets + self.counts  # (B,) tokens held after this call
        # Slot t of row b is at position offsets[b] + t. Padded slots repeat the row's last position
        # (of this call, or of the tokens it holds when it appends none), which a full row of a
        # learned position table still has.
        last = np.maximum(self.key_lengths - 1, 0)[:, None]
        slots = self.offsets[:, None] + np.arange(self.width, dtype=np.int32)[None, :]
        self.positions = np.minimum(slots, last).reshape(-1).astype(np.int32)  # (B*T,)

    @classmethod
    def fresh(cls, lengths: np.ndarray, width: int) -> TokenBatch:
        """A first pass over whole sequences (a prompt, an encoder input): nothing held before."""
        lengths = np.asarray(lengths, dtype=np.int32)
        return cls(np.zeros_like(lengths), lengths, width)

    @property
    def batch_size(self) -> int:
        return len(self.offsets)

    @property
    def last_slots(self) -> np.ndarray:
        """int (B,): flat index b*T + t of each row's last valid slot (its slot 0 when it has none)."""
        return np.arange(self.batch_size) * self.width + np.maximum(self.counts - 1, 0)


class KVCache:
    """Keys and values of one attention layer: k and v (B, H_kv, capacity, D), float32.

    Row b's keys are k[b, :, :length_b]; lengths live with the state that owns the cache."""

    def __init__(self, batch_size: int, n_kv_heads: int, head_dim: int, capacity: int = 0):
        shape = (batch_size, n_kv_heads, capacity, head_dim)
        self.k = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reserve(self, n_tokens: int, used: int) -> None:
        """Make room for n_tokens per row, keeping the first `used`; grows geometrically so a long
        generation reallocates O(log T) times."""
        if n_tokens <= self.capacity:
            return
        capacity = max(n_tokens, 2 * self.capacity, 16)
        self.k, self.v = (self._moved(a, slice(None), used, capacity) for a in (self.k, self.v))

    def select(self, rows: np.ndarray, used: int) -> None:
        """Keep rows `rows` (may repeat and reorder), copying only the first `used` tokens of each."""
        self.k, self.v = (self._moved(a, rows, used, self.capacity) for a in (self.k, self.v))

    def write(self, k: np.ndarray, v: np.ndarray, batch: TokenBatch) -> None:
        """Store the T new keys and values of every row, k and v (B, T, H_kv, D), at positions
        offsets[b] + t (padded slots included: they land past the row's length)."""
        b, t = k.shape[:2]
        rows = np.arange(b)[:, None]  # (B, 1)
        slots = batch.offsets[:, None] + np.arange(t)[None, :]  # (B, T)
        # Advanced indices on axes 0 and 2 put their (B, T) shape first: the target is (B, T, H_kv, D).
        self.k[rows, :, slots] = k
        self.v[rows, :, slots] = v

    @staticmethod
    def _moved(a: np.ndarray, rows, used: int, capacity: int) -> np.ndarray:
        src = a[rows, :, :used]  # (B', H_kv, used, D)
        # Zeros, not empty: attention multiplies the probability 0 of a slot past a row's length by
        # its value, and garbage there could be NaN.
        out = np.zeros((src.shape[0], a.shape[1], capacity, a.shape[3]), dtype=a.dtype)
        out[:, :, :used] = src
        return out
