"""Choosing k candidates per row from scores (R, N): the best ones, or a random draw.

Greedy search asks for 1 candidate per row out of the vocabulary; beam search for 2 * beam_size
(or more) out of beam_size * vocabulary accumulated scores. Both go through a sampler, so sampling
works with either search, as in CTranslate2.

`RandomSampler` follows CTranslate2's pipeline: keep the `sampling_topk` best scores (0: all), divide
by `sampling_temperature`, keep the nucleus of mass `sampling_topp`, then draw k distinct candidates
with the Gumbel-top-k trick (for k = 1 this is an exact categorical draw). Top-k commutes with the
temperature, so this equals transformers' temperature -> top-k -> top-p order. The returned values are
the *input* scores of the chosen candidates (the model's log-probs, not the tempered ones).

Each row draws from its own `numpy.random.Generator`, so a row's samples depend on the seed and its
position in the call only, not on the other rows or on when they finish. A request without a seed
draws fresh entropy, or after `set_random_seed` the next seed of that sequence (`next_default_seed`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from .. import ops
from ..backends import get_array_module
from .options import DecodingOptions


_seeds: np.random.SeedSequence | None = None  # set_random_seed's sequence; None: fresh entropy
_seeds_lock = threading.Lock()


def set_random_seed(seed: int | None) -> None:
    """CTranslate2's `set_random_seed`: from now on, each sampling request made without a `seed`
    takes the next seed of a sequence started from `seed`, in the order the requests are made, so
    a script samples the same from run to run. None goes back to fresh entropy per request."""
    global _seeds
    with _seeds_lock:
        _seeds = None if seed is None else np.random.SeedSequence(int(seed))


def next_default_seed() -> int | None:
    """The seed of the next sampling request made without one: the next of set_random_seed's
    sequence, or None (fresh entropy)."""
    with _seeds_lock:
        return None if _seeds is None else int(_seeds.spawn(1)[0].generate_state(1, np.uint64)[0])


def row_generators(seed: int | None, keys: Sequence[tuple[int, int]]) -> list[np.random.Generator]:
    """One generator per row, keyed by (batch_id, hypothesis_id); seed None draws fresh entropy."""
    root = np.random.SeedSequence(seed)
    return [np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=key)) for key in keys]


def nucleus_mask(sorted_logits: np.ndarray, topp: float, n_threads: int = 1) -> np.ndarray:
    """bool mask of the nucleus of each row of logits sorted in descending order: a token stays
    while the probability mass strictly before it is below `topp` (the best token always stays)."""
    probs = ops.softmax(sorted_logits.astype(np.float64), n_threads=n_threads)
    mass_before = np.cumsum(probs, axis=-1) - probs
    return mass_before < topp


class BestSampler:
    """The k best scores of each row, in descending order (ties: lowest index first)."""

    def __call__(self, scores: np.ndarray, k: int, rngs=None, *, n_threads: int = 1):
        if k == 1:  # a greedy step: one pass over each row, no partial sort (same tie rule)
            ids = ops.argmax(scores, n_threads=n_threads)[:, None]
            return ids, get_array_module(scores).take_along_axis(scores, ids, axis=1)
        values, ids = ops.topk(scores, k, n_threads=n_threads)
        return ids, values


class RandomSampler:
    def __init__(self, topk: int, topp: float, temperature: float) -> None:
        self.topk = topk
        self.topp = topp
        self.temperature = temperature

    def __call__(self, scores: np.ndarray, k: int, rngs: Sequence[np.random.Generator], *, n_threads: int = 1):
        """k distinct candidates per row of scores (R, N): (int32 ids (R, k), input scores (R, k))."""
        r, n = scores.shape
        restrict = 0 < self.topk < n
        if restrict or self.topp < 1:
            # Sorted candidates: the top-k set, or the whole row when only top-p needs the order.
            m = max(self.topk, k) if restrict else n
            z, columns = ops.topk(scores, m, n_threads=n_threads)
            z = z / self.temperature
            if restrict:
                z[:, self.topk :] = -np.inf  # padding when k > topk: never drawn over a real candidate
            if self.topp < 1:
                z[~nucleus_mask(z, self.topp, n_threads)] = -np.inf
        else:
            z, columns = scores / self.temperature, None
        noise = np.stack([rng.gumbel(size=z.shape[1]) for rng in rngs]) if r else np.zeros(z.shape)
        _, picked = ops.topk(z + noise, k, n_threads=n_threads)
        ids = picked if columns is None else np.take_along_axis(columns, picked, axis=1)
        return ids, np.take_along_axis(scores, ids, axis=1)


def make_sampler(options: DecodingOptions) -> BestSampler | RandomSampler:
    if not options.is_sampling:
        return BestSampler()
    return RandomSampler(options.sampling_topk, options.sampling_topp, options.sampling_temperature)
