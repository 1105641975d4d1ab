"""KVCache.select: rows follow the given order, through the spare buffers or in place; TokenBatch's
cached geometry."""

import numpy as np
import pytest

from aiotranslate.layers import KVCache, RowMoves, TokenBatch


def _filled(batch: int, capacity: int, seed: int) -> KVCache:
    cache = KVCache(batch, 2, 4, capacity)
    rng = np.random.default_rng(seed)
    cache.k[...] = rng.standard_normal(cache.k.shape)
    cache.v[...] = rng.standard_normal(cache.v.shape)
    return cache


@pytest.mark.parametrize(
    "rows",
    [
        [0, 0, 2, 1, 4],  # in place: row 3 reads row 1 before row 1 takes row 0's
        [0, 0, 2, 3, 3],  # in place, no source overwritten: rows copied straight from the sources
        [0, 1, 2, 3, 4],  # nothing moves
        [1, 0, 3, 2, 4],  # most rows move: through the spare buffers
        [4, 4, 4],  # fewer rows
        [0, 1, 2, 3, 4, 0, 1],  # more rows (beam expansion)
    ],
)
def test_select_keeps_the_used_tokens_of_the_given_rows(rows):
    cache = _filled(5, 8, seed=0)
    used = 6
    k, v = cache.k.copy(), cache.v.copy()
    cache.select(np.array(rows), used)
    assert cache.k.shape[0] == len(rows)
    np.testing.assert_array_equal(cache.k[:, :, :used], k[rows, :, :used])
    np.testing.assert_array_equal(cache.v[:, :, :used], v[rows, :, :used])


def test_repeated_selects_alternate_paths_without_mixing_rows():
    """Beam search selects every step: in-place moves and buffer swaps interleave."""
    cache = _filled(4, 8, seed=1)
    expected_k = cache.k.copy()
    for rows in ([0, 0, 2, 3], [3, 2, 1, 0], [0, 1, 1, 3], [2, 3, 0, 1]):
        cache.select(np.array(rows), 8)
        expected_k = expected_k[rows]
        np.testing.assert_array_equal(cache.k, expected_k)


def test_one_row_moves_serves_every_cache_of_a_state():
    """A state works out the moves once and hands them to each layer's cache."""
    caches = [_filled(5, 8, seed=s) for s in (2, 3)]
    before = [(c.k.copy(), c.v.copy()) for c in caches]
    rows = np.array([0, 0, 2, 1, 4])
    moves = RowMoves(rows, 5)
    assert moves.in_place == ([1, 3], [0, 1], [False, True])  # row 1 is read before it takes row 0's
    for cache, (k, v) in zip(caches, before):
        cache.select(moves, 8)
        np.testing.assert_array_equal(cache.k, k[rows])
        np.testing.assert_array_equal(cache.v, v[rows])
    assert RowMoves(np.array([1, 0, 3, 2, 4]), 5).in_place is None  # most rows move: gathered
    assert RowMoves(np.array([1, 0, 2, 3]), 4).in_place == ([0, 1], [1, 0], [True, True])  # half: in place


def test_row_moves_of_another_batch_size_gather():
    """Moves worked out for 3 rows (nothing moves there) do not apply in place to a 4-row cache."""
    cache = _filled(4, 8, seed=4)
    k = cache.k.copy()
    cache.select(RowMoves(np.array([0, 1, 2]), 3), 8)
    np.testing.assert_array_equal(cache.k, k[:3])


@pytest.mark.parametrize(
    ("offsets", "counts", "width", "common", "span"),
    [
        ([3, 3, 3], [1, 1, 0], 1, 3, 4),  # a decoding step
        ([0, 0], [5, 2], 5, 0, 5),  # a batch of prompts
        ([4, 1], [1, 1], 1, None, 5),  # rows at different offsets
        ([], [], 1, None, 1),  # no rows
    ],
)
def test_token_batch_common_offset_and_span(offsets, counts, width, common, span):
    batch = TokenBatch(np.array(offsets, dtype=np.int32), np.array(counts, dtype=np.int32), width)
    assert batch.common_offset == common
    assert batch.span == span
