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

A compact batch (`TokenBatch.compact`) drops the padded slots from the activations: they hold the
valid slots only, `rows` of the B*T grid, so that the row-wise layers (linears, norms, feed-forward)
do no work for padding. Attention alone needs the grid: it spreads its projections over it and
takes the valid rows back (layers/attention.py).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..backends import get_array_module, place_like


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
        self.rows: np.ndarray | None = None  # a compact batch's valid slots (`compact`)

    def compact(self) -> TokenBatch:
        """This batch with activations of its valid slots only, when it has padding and some valid
        slot (else itself): `rows`, int (N,), the flat indices b*T + t (t < counts[b]) in row order;
        `positions` stays the grid's (`take` picks the rows of such per-slot arrays)."""
        if not 0 < int(self.counts.sum()) < self.batch_size * self.width:
            return self
        batch = TokenBatch(self.offsets, self.counts, self.width)
        batch.rows = np.flatnonzero(np.arange(self.width)[None, :] < self.counts[:, None])
        return batch

    def take(self, a: np.ndarray) -> np.ndarray:
        """Host array a (B*T, ...) over the grid's slots: the rows the activations hold."""
        return a if self.rows is None else a[self.rows]

    def to_grid(self, a):
        """A compact batch's rows a (N, ...) spread over the grid: (B*T, ...), zeros at padded slots."""
        grid = get_array_module(a).zeros((self.batch_size * self.width,) + a.shape[1:], dtype=a.dtype)
        grid[place_like(self.rows, a)] = a
        return grid

    @classmethod
    def fresh(cls, lengths: np.ndarray, width: int) -> TokenBatch:
        """A first pass over whole sequences (a prompt, an encoder input): nothing held before."""
        lengths = np.asarray(lengths, dtype=np.int32)
        return cls(np.zeros_like(lengths), lengths, width)

    @property
    def batch_size(self) -> int:
        return len(self.offsets)

    @cached_property
    def common_offset(self) -> int | None:
        """The offset every row shares (a decoding step, a batch of prompts); None when rows differ or
        there are none."""
        offsets = self.offsets
        return int(offsets[0]) if len(offsets) and (offsets == offsets[0]).all() else None

    @cached_property
    def span(self) -> int:
        """Key slots that causal attention over the cache reads after this call: max(offsets) + T.
        Cached, as common_offset: every layer of a forward asks."""
        return int(self.offsets.max(initial=0)) + self.width

    @cached_property
    def max_position(self) -> int:
        """The largest position of a slot (0 for no slots); cached: every rotary layer asks."""
        return int(self.positions.max(initial=0))

    @property
    def last_slots(self) -> np.ndarray:
        """int (B,): flat index b*T + t of each row's last valid slot (its slot 0 when it has none); in
        a compact batch, the index of that slot among `rows` (a row with none: any valid index)."""
        if self.rows is not None:
            return np.maximum(np.cumsum(self.counts) - 1, 0)
        return np.arange(self.batch_size) * self.width + np.maximum(self.counts - 1, 0)


class KVCache:
    """Keys and values of one attention layer: k and v (B, H_kv, capacity, D), in the namespace
    and dtype of `like` (the model's weights: numpy or cupy), float32 numpy when like is None.

    Row b's keys are k[b, :, :length_b]; lengths live with the state that owns the cache.
    Slots past a row's length hold zeros or stale keys of earlier rows: always finite values, which
    attention multiplies by probability 0 (garbage such as NaN there would poison the product)."""

    def __init__(self, batch_size: int, n_kv_heads: int, head_dim: int, capacity: int = 0, *, like=None):
        shape = (batch_size, n_kv_heads, capacity, head_dim)
        self._xp = np if like is None else get_array_module(like)
        self._dtype = np.float32 if like is None else like.dtype
        self.k = self._xp.zeros(shape, dtype=self._dtype)
        self.v = self._xp.zeros(shape, dtype=self._dtype)
        # Second pair of buffers for `select`, which gathers into it and swaps (beam search selects
        # every step): allocated once instead of every step. May hold more rows than k and v.
        self._spare: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reserve(self, n_tokens: int, used: int) -> None:
        """Make room for n_tokens per row, keeping the first `used`; grows geometrically so a long
        generation reallocates O(log T) times."""
        if n_tokens <= self.capacity:
            return
        capacity = max(n_tokens, 2 * self.capacity, 16)
        self.k, self.v = (self._moved(a, used, capacity) for a in (self.k, self.v))
        self._spare = None

    def select(self, rows: np.ndarray | RowMoves, used: int) -> None:
        """Keep rows `rows` (may repeat and reorder), copying only the first `used` tokens of each;
        rows may come as the `RowMoves` that the caches of a state share."""
        moves = rows if isinstance(rows, RowMoves) else RowMoves(rows, self.k.shape[0])
        rows = moves.rows
        n = len(rows)
        if moves.in_place is not None and moves.batch_size == self.k.shape[0] and isinstance(self.k, np.ndarray):
            moved, sources, clobbered = moves.in_place
            for a in (self.k, self.v):
                parts = [a[j, :, :used].copy() if c else a[j, :, :used] for j, c in zip(sources, clobbered)]
                for i, part in zip(moved, parts):
                    a[i, :, :used] = part
            return
        spare = self._spare
        if spare is None or spare[0].shape[0] < n:
            shape = (n,) + self.k.shape[1:]
            spare = (self._xp.zeros(shape, dtype=self._dtype), self._xp.zeros(shape, dtype=self._dtype))
        # Leading-axis slices of the buffers stay C-contiguous, so fewer rows need no new buffer.
        k, v = spare[0][:n], spare[1][:n]
        _gather_rows(self.k, rows, used, k)
        _gather_rows(self.v, rows, used, v)
        self._spare = (self.k, self.v) if self.k.base is None else (self.k.base, self.v.base)
        self.k, self.v = k, v

    def extend(self, other: KVCache, used: int, other_used: int) -> None:
        """Append the rows of `other` after ours (continuous batching: sequences joining a running
        batch), keeping the first `used` tokens of our rows and `other_used` of its rows."""
        b, n = self.k.shape[0], self.k.shape[0] + other.k.shape[0]
        shape = (n,) + self.k.shape[1:2] + (max(self.capacity, other.capacity),) + self.k.shape[3:]
        merged = []
        for mine, theirs in ((self.k, other.k), (self.v, other.v)):
            out = get_array_module(mine).zeros(shape, dtype=mine.dtype)
            out[:b, :, :used] = mine[:, :, :used]
            out[b:, :, :other_used] = theirs[:, :, :other_used]
            merged.append(out)
        self.k, self.v = merged
        self._spare = None

    def fill(self, prefix: KVCache, n_tokens: int) -> None:
        """Give every row the first n_tokens of row 0 of `prefix` (the cache of a static prompt);
        the capacity must hold them."""
        for mine, theirs in ((self.k, prefix.k), (self.v, prefix.v)):
            mine[:, :, :n_tokens] = theirs[:1, :, :n_tokens]

    def write(self, k: np.ndarray, v: np.ndarray, batch: TokenBatch) -> None:
        """Store the T new keys and values of every row, k and v (B, T, H_kv, D), at positions
        offsets[b] + t (padded slots included: they land past the row's length)."""
        b, t = k.shape[:2]
        start = batch.common_offset
        if start is not None:  # every row at one offset (a step, a prompt): a slice
            self.k[:, :, start : start + t] = k.transpose(0, 2, 1, 3)  # (B, H_kv, T, D)
            self.v[:, :, start : start + t] = v.transpose(0, 2, 1, 3)
            return
        rows = place_like(np.arange(b)[:, None], k)  # (B, 1)
        slots = place_like(batch.offsets[:, None] + np.arange(t)[None, :], k)  # (B, T)
        # Advanced indices on axes 0 and 2 put their (B, T) shape first: the target is (B, T, H_kv, D).
        self.k[rows, :, slots] = k
        self.v[rows, :, slots] = v

    @staticmethod
    def _moved(a: np.ndarray, used: int, capacity: int) -> np.ndarray:
        out = get_array_module(a).zeros(a.shape[:2] + (capacity, a.shape[3]), dtype=a.dtype)
        out[:, :, :used] = a[:, :, :used]
        return out


class RowMoves:
    """How `KVCache.select(rows)` moves the rows of B-row caches, worked out once for all the caches
    of a state. When most rows keep their own (beams extending themselves, the usual case), only the
    others move, in place, a row at a time (basic slices: a third of the time of one fancy-indexed
    copy for a beam of 4): `in_place` is then (destinations, sources, clobbered), clobbered[i] when
    source i is also a destination, to be copied before any row is overwritten. Otherwise (more than
    half the rows move, or the row count changes) `in_place` is None and the rows are gathered into
    the spare buffers."""

    def __init__(self, rows: np.ndarray, batch_size: int):
        self.rows, self.batch_size = rows, batch_size  # the caches' rows before the move
        self.in_place: tuple[list[int], list[int], list[bool]] | None = None
        n = len(rows)
        if n == batch_size:
            moved = np.flatnonzero(rows != np.arange(n)).tolist()
            if 2 * len(moved) <= n:
                sources, destinations = rows[moved].tolist(), set(moved)
                self.in_place = (moved, sources, [j in destinations for j in sources])


def _gather_rows(src: np.ndarray, rows: np.ndarray, used: int, dst: np.ndarray) -> None:
    """dst[i, :, :used] = src[rows[i], :, :used]: whole contiguous rows when most of each row is in
    use (one block copy per row inside numpy), else a copy of the used part per row (numpy's
    fancy-indexing gather of a strided slice is several times slower than either). On the device,
    one whole-row gather (a kernel; the per-row loop would be a launch per row)."""
    if not isinstance(src, np.ndarray):
        get_array_module(src).take(src, place_like(rows, src), axis=0, out=dst)
    elif 2 * used >= src.shape[2]:
        np.take(src, rows, axis=0, out=dst, mode="clip")  # rows are checked by the state
    else:
        for i, r in enumerate(rows.tolist()):
            dst[i, :, :used] = src[r, :, :used]
