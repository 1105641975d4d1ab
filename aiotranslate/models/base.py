"""The contract between decoding and models: what a search needs from a network, nothing more.

A search (greedy, beam, sampling) drives a `DecoderModel` through a `DecoderState`:

    state = model.start(...)                       # encoder pass / empty KV cache, B rows
    logits = model.decode(state, ids, lengths)     # append lengths[i] tokens to row i -> (B, V)
    state.select(rows)                             # reorder / duplicate / drop rows (beams, finished)
    state.extend(other)                            # optional: append another state's rows, which
                                                   # then decode as they would alone (continuous batching)

Rows are independent sequences; each row of the state owns its KV cache and its position, so a
ragged batch decodes exactly like its rows one by one. Models know nothing of search, threads or
asyncio; decoding knows nothing of layers.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class DecoderState(Protocol):
    """Per-row decoder state: self-attention KV caches, cached cross-attention K/V, positions."""

    @property
    def batch_size(self) -> int:
        """Number of rows (live sequences) in the state."""
        ...

    @property
    def lengths(self) -> np.ndarray:
        """int32 (B,): tokens already decoded (appended) per row."""
        ...

    def select(self, rows: np.ndarray) -> None:
        """Keep rows `rows` (int array, may repeat and reorder) in that order, in place.

        Beam search uses it to expand B -> B * beam and to follow the chosen beams;
        every search uses it to drop finished sequences.
        """
        ...


class DecoderModel(Protocol):
    vocab_size: int

    def decode(
        self, state: DecoderState, ids: np.ndarray, lengths: np.ndarray | None = None, *, all_logits: bool = False
    ) -> np.ndarray:
        """Append tokens to every row and return next-token logits.

        ids: int32 (B, T) right-padded; lengths: int32 (B,) number of valid tokens per row
        (None = all T; 0 is allowed and leaves the row unchanged).
        Returns float32 (B, V) logits after each row's last appended token, or with all_logits
        (B, T, V) for every appended position (scoring, prompt log-probs).
        """
        ...
