"""Position information: absolute position tables added to the embeddings (`PositionEmbedding`:
learned as in GPT-2/BART/BERT, or a fixed sinusoidal table from `ops.sinusoidal_table` as in Marian)
and rotary embeddings applied to queries and keys inside attention (`Rotary`, Llama family).

Positions are per token (`TokenBatch.positions`), so every row of a ragged batch is placed as if
it were alone. The rotary cos/sin tables are computed once per model and shared read-only by all
threads; when a longer sequence needs more rows, or `dynamic` scaling needs other frequencies, new
tables are built and swapped in whole, never written in place.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import ops
from ..backends import share_like
from .kv_cache import TokenBatch
from .linear import freeze
from .rope import rope_frequencies


class PositionEmbedding:
    """Row positions[i] + offset of a (P, C) table (BART's learned table starts at offset 2)."""

    def __init__(self, table: np.ndarray, offset: int = 0):
        self.table = freeze(table)
        self.offset = int(offset)

    @property
    def max_positions(self) -> int:
        return self.table.shape[0] - self.offset

    def __call__(self, positions: np.ndarray, *, out=None, n_threads=1) -> np.ndarray:
        """positions int (N,) -> (N, C)."""
        if positions.size and positions.max() >= self.max_positions:
            raise ValueError(
                f"position {int(positions.max())} is past the model's {self.max_positions} positions"
            )
        return ops.embedding(positions + self.offset, self.table, out=out, n_threads=n_threads)


class Rotary:
    """Rotary position embedding, half-split layout (pairs i, i + R2 of each head), in place.

    params: the flat rope dict of `convert.config.rope_parameters`; max_positions: the model's
    `max_position_embeddings` (the tables start that long; `dynamic` scaling starts past it)."""

    def __init__(self, params: dict, head_dim: int, max_positions: int):
        self.params = dict(params)
        self.head_dim = head_dim
        self.max_positions = max_positions
        self.inv_freq, self.attention_scaling = rope_frequencies(self.params, head_dim, max_positions)
        self._tables = self._build(self.inv_freq, self.attention_scaling, max_positions, like=None)
        self._dynamic: tuple[int, np.ndarray, np.ndarray] | None = None  # (length, cos, sin), last used

    def __call__(self, x: np.ndarray, batch: TokenBatch, *, n_threads: int = 1) -> np.ndarray:
        """Rotate x (B*T, H, D), C-contiguous, in place by the position of each token."""
        cos, sin = self._tables_for(batch.max_position + 1)
        long_rows = ()
        if self.params["rope_type"] == "dynamic":
            long_rows = np.flatnonzero(batch.key_lengths > self.max_positions)
        if len(long_rows) == 0:
            return ops.rotary(x, batch.positions, cos, sin, n_threads=n_threads)
        # Dynamic NTK scaling: a row longer than max_positions is rotated with frequencies for its
        # own length, as transformers does for one sequence of that length.
        t = batch.width
        rows = x.reshape(batch.batch_size, t, *x.shape[1:])
        short = batch.key_lengths <= self.max_positions
        for b in range(batch.batch_size):
            if short[b]:
                table = (cos, sin)
            else:
                table = self._dynamic_tables(int(batch.key_lengths[b]))
            ops.rotary(rows[b], batch.positions[b * t : (b + 1) * t], *table, n_threads=n_threads)
        return x

    def _tables_for(self, n_positions: int) -> tuple[np.ndarray, np.ndarray]:
        tables = self._tables
        if tables[0].shape[0] < n_positions:
            # Past the configured length (allowed for rotary, as in transformers): grow by doubling.
            size = max(n_positions, 2 * tables[0].shape[0])
            tables = self._tables = self._build(self.inv_freq, self.attention_scaling, size, like=tables[0])
        return tables

    def _dynamic_tables(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        last = self._dynamic  # one read: another thread may swap it meanwhile
        if last is None or last[0] != length:
            inv_freq, scaling = rope_frequencies(self.params, self.head_dim, self.max_positions, length)
            last = self._dynamic = (length, *self._build(inv_freq, scaling, length, like=self._tables[0]))
        return last[1], last[2]

    @staticmethod
    def _build(inv_freq: np.ndarray, scaling: float, n_positions: int, like) -> tuple[np.ndarray, np.ndarray]:
        """float32 cos and sin tables, computed on the host, placed with array `like` (None: host)."""
        tables = ops.rotary_tables(inv_freq, n_positions, scaling)
        return tuple(freeze(t if like is None else share_like(t, like)) for t in tables)

    def _on_device(self, move) -> Rotary:
        """The device twin (`models.device.to_device`): tables moved in float32 (the rotary kernel reads float32
        angles whatever the activations' dtype); inv_freq stays on the host, where tables are built."""
        twin = copy.copy(self)
        twin._tables = tuple(move(t, np.float32) for t in self._tables)
        twin._dynamic = None
        return twin
