"""Each logits processor against a plain formula written independently of the implementation."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from aiotranslate.decoding import DecodingOptions
from aiotranslate.decoding.processors import (
    LogitsProcessors,
    apply_repetition_penalty,
    no_repeat_ngram_bans,
    suppressed_sequence_bans,
)

V = 12
histories = st.lists(st.lists(st.integers(0, V - 1), max_size=14), min_size=1, max_size=4)


def _logits(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, (rows, V)).astype(np.float32)


@given(histories, st.floats(0.2, 5.0))
def test_repetition_penalty_divides_positive_and_multiplies_negative_logits(hs, penalty):
    logits = _logits(len(hs))
    expected = logits.copy()
    for r, h in enumerate(hs):
        for v in set(h):
            x = expected[r, v]
            expected[r, v] = x / penalty if x > 0 else x * penalty
    apply_repetition_penalty(logits, hs, penalty)
    np.testing.assert_allclose(logits, expected, rtol=1e-6)


def _ngram_bans_by_definition(h: list[int], n: int) -> set[int]:
    """Tokens t such that h + [t] ends with an n-gram that already occurs in h."""
    seen = {tuple(h[i : i + n]) for i in range(len(h) - n + 1)}
    return {t for t in range(V) if len(h) + 1 >= n and tuple((h + [t])[len(h) + 1 - n :]) in seen}


@given(st.lists(st.integers(0, 3), max_size=16), st.integers(1, 4))
def test_no_repeat_ngram_bans_exactly_the_repeating_completions(h, n):
    assert set(no_repeat_ngram_bans(h, n).tolist()) == _ngram_bans_by_definition(h, n)


@given(st.lists(st.integers(0, 4), max_size=10), st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
def test_suppressed_sequences_ban_the_token_that_would_complete_one(h, sequences):
    expected = {s[-1] for s in sequences if len(h) >= len(s) - 1 and h[len(h) - len(s) + 1 :] == s[:-1]}
    assert set(suppressed_sequence_bans(h, sequences)) == expected


def test_processors_penalize_then_ban_in_place():
    """Repetition penalty on the raw logits, then -inf for disabled ids, end ids below the minimum
    length, repeated n-grams and suppressed sequences; nothing else changes."""
    hs = [[1, 2, 3, 1, 2], [4, 4, 5]]
    options = DecodingOptions(repetition_penalty=2.0, no_repeat_ngram_size=3, disable_ids=[0],
                              suppress_sequences=[[5, 6], [9]], end_ids=[11, 10])
    logits = _logits(2, seed=1)
    expected = logits.copy()
    apply_repetition_penalty(expected, hs, 2.0)
    expected[:, [0, 9]] = -np.inf
    expected[0, [10, 11]] = -np.inf  # row 0 is below its minimum length, row 1 is not
    expected[0, 3] = -np.inf  # 1 2 -> 3 again
    expected[1, 6] = -np.inf  # 5 -> 6 is suppressed
    LogitsProcessors(options)(logits, hs, np.array([False, True]))
    np.testing.assert_array_equal(logits, expected)


def test_no_processor_leaves_logits_alone():
    logits = _logits(3)
    before = logits.copy()
    LogitsProcessors(DecodingOptions())(logits, [[1, 2], [], [3]], np.array([True, False, True]))
    np.testing.assert_array_equal(logits, before)


def test_apply_bans_in_place_and_builds_histories_only_when_read():
    """The searches hand over their own logits: apply changes that array (no (R, V) copy) and asks
    for the histories only when a processor reads them."""
    asked = []

    def histories():
        asked.append(True)
        return [[1, 2], [3]]

    logits = _logits(2)
    expected = logits.copy()
    expected[0, [10, 11]] = -np.inf  # row 0 is below its minimum length
    LogitsProcessors(DecodingOptions(end_ids=(10, 11))).apply(logits, histories, np.array([False, True]))
    np.testing.assert_array_equal(logits, expected)
    assert not asked
    LogitsProcessors(DecodingOptions(end_ids=(10, 11))).apply(logits, histories, np.array([True, True]))
    np.testing.assert_array_equal(logits, expected)  # nothing to ban
    LogitsProcessors(DecodingOptions(repetition_penalty=2.0)).apply(logits, histories, np.array([True, True]))
    assert asked and logits[0, 1] != expected[0, 1]
