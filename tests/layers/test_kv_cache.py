"""KVCache.select: rows follow the given order, through the spare buffers or in place."""

import numpy as np
import pytest

from aiotranslate.layers import KVCache


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
