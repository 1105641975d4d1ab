"""Scoring: the log-probability of each token of given sequences, in one decoder pass.

`score_sequences` is the core of `score_batch`: the decoder reads every sequence but its last token
at once (`decode(..., all_logits=True)`) and each position's log-softmax gives the log-probability of
the token that follows. The API layer builds the sequences (decoder start token, target tokens, end
token; or a prompt for a language model) and maps tokens; a sequence of fewer than two tokens has
nothing to score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import ops
from ..backends import to_host
from .search import pad


def score_sequences(model, state, sequences: Sequence[Sequence[int]], *, n_threads: int = 1) -> list[np.ndarray]:
    """float32 log P(s[t] | s[:t]) for t = 1 .. len(s) - 1 of each sequence s (one row of `state` each)."""
    inputs = [list(s[:-1]) for s in sequences]
    ids, lengths = pad(inputs)
    if ids.shape[1] == 0:
        return [np.zeros(0, dtype=np.float32) for _ in sequences]
    logits = model.decode(state, ids, lengths, all_logits=True)  # (B, T, V)
    log_probs = to_host(ops.log_softmax(logits.astype(np.float32, copy=False), n_threads=n_threads))
    return [
        log_probs[b, np.arange(len(s) - 1), np.asarray(s[1:], dtype=np.int64)] if len(s) > 1 else log_probs[b, :0, 0]
        for b, s in enumerate(sequences)
    ]
