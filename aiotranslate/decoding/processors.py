"""Logits processors: what changes the next-token logits before a token is chosen.

Each processor works in place on float32 logits (R, V), one row per live sequence, given each row's
history: every decoder token of that sequence so far (static prompt, start token, prefix and
generated tokens), as transformers' processors see `input_ids`. The order is CTranslate2's and
transformers': the repetition penalty rescales logits first, then bans (no-repeat n-grams, disabled
ids, suppressed sequences, end tokens before the minimum length) set logits to -inf. Searches apply
log-softmax after the processors, so the probabilities they score are renormalized over the allowed
tokens (transformers' beam search with `renormalize_logits=True`). transformers' beam search also
applies the repetition penalty to log-probs rather than logits; here it always rescales logits
(CTranslate2, and transformers' greedy search), so beam search with a repetition penalty differs
from transformers by design.

Not here: temperature, top-k and top-p (they shape sampling, not scores: see `sampling`), and the
forced prefix (the searches prefill it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..backends import place_like
from .options import DecodingOptions


def apply_repetition_penalty(logits: np.ndarray, histories: Sequence[Sequence[int]], penalty: float) -> None:
    """CTRL's penalty (arXiv:1909.05858) on every token already in a row's history:
    logit / penalty where the logit is positive, logit * penalty where it is negative."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    if rows.size == 0:
        return
    ids = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
    # A token repeated in a history gives duplicate (row, id) pairs; they all compute the same value
    # from the unpenalized logits, so the fancy assignment penalizes each token once.
    values = logits[rows, ids]
    logits[rows, ids] = np.where(values < 0, values * penalty, values / penalty)


def no_repeat_ngram_bans(history: Sequence[int], n: int) -> np.ndarray:
    """Tokens that would complete an n-gram already present in `history` (n >= 1)."""
    h = np.asarray(history, dtype=np.int64)
    if n < 1 or len(h) < n:  # no complete n-gram yet
        return np.empty(0, dtype=np.int64)
    if n == 1:
        return np.unique(h)
    # Windows of the first n-1 tokens of every earlier n-gram, compared with the last n-1 tokens.
    windows = np.lib.stride_tricks.sliding_window_view(h[:-1], n - 1)
    matches = np.flatnonzero((windows == h[len(h) - n + 1 :]).all(axis=1))
    return np.unique(h[matches + n - 1])


def suppressed_sequence_bans(history: Sequence[int], sequences: Sequence[Sequence[int]]) -> list[int]:
    """Last tokens of the `sequences` whose other tokens end the history (single tokens: always)."""
    banned = []
    for s in sequences:
        k = len(s) - 1
        if k == 0 or (k <= len(history) and list(history[len(history) - k :]) == list(s[:-1])):
            banned.append(s[-1])
    return banned


class LogitsProcessors:
    """The processors that `options` enables, applied in order by one call."""

    def __init__(self, options: DecodingOptions) -> None:
        self.repetition_penalty = options.repetition_penalty
        self.no_repeat_ngram_size = options.no_repeat_ngram_size
        self.disable_ids = np.asarray(options.disable_ids, dtype=np.int64)
        self.suppress_sequences = options.suppress_sequences
        self.end_ids = np.asarray(options.end_ids, dtype=np.int64)
        # The processors that read histories work row by row in numpy: they need host logits. The bans
        # alone (disabled ids, end tokens below the minimum length) also run on a device's logits,
        # which then stay there (OPUS-MT bans its pad token at every step).
        self.reads_histories = self.repetition_penalty != 1 or bool(self.no_repeat_ngram_size or self.suppress_sequences)
        self._placed: dict[type, tuple] = {}  # (disable_ids, end_ids) per array type of the logits

    def changes(self, can_end: np.ndarray) -> bool:
        """Whether a call with this can_end may change any logit."""
        return self.reads_histories or bool(self.disable_ids.size) or bool(self.end_ids.size and not can_end.all())

    def apply(
        self, logits: np.ndarray, histories: Callable[[], Sequence[Sequence[int]]], can_end: np.ndarray
    ) -> None:
        """Every enabled processor, in place, on float32 logits that the caller owns (a search's
        logits of one step: nothing else reads them, so no (R, V) copy), on the host where
        `reads_histories`, else on the host or the device. Nothing happens when no
        processor would change anything (plain decoding: no histories built). histories() lists each
        row's history; it is only called when a processor reads them."""
        if self.changes(can_end):
            self(logits, histories() if self.reads_histories else [], can_end)

    def __call__(self, logits: np.ndarray, histories: Sequence[Sequence[int]], can_end: np.ndarray) -> None:
        """logits: float32 (R, V), changed in place; can_end: bool (R,), False below the minimum length."""
        if self.repetition_penalty != 1:
            apply_repetition_penalty(logits, histories, self.repetition_penalty)
        if type(logits) not in self._placed:  # a device copy of the ids once per search, not per step
            self._placed[type(logits)] = (place_like(self.disable_ids, logits), place_like(self.end_ids, logits))
        disable_ids, end_ids = self._placed[type(logits)]
        if self.disable_ids.size:
            logits[:, disable_ids] = -np.inf
        if self.end_ids.size and not can_end.all():
            rows = place_like(np.flatnonzero(~can_end), logits)
            logits[rows[:, None], end_ids[None, :]] = -np.inf
        for row, history in enumerate(histories):
            if self.no_repeat_ngram_size:
                logits[row, no_repeat_ngram_bans(history, self.no_repeat_ngram_size)] = -np.inf
            if self.suppress_sequences:
                logits[row, suppressed_sequence_bans(history, self.suppress_sequences)] = -np.inf
