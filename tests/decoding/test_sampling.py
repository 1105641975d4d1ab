"""Sampling: the draws follow the top-k / top-p / temperature formula (chi-square over many draws),
sampling_topk=1 is greedy, and a seed reproduces a result whatever else is in the batch."""

from __future__ import annotations

import numpy as np
import pytest
from hf_reference import HFAdapter, tiny_decoder
from scipy.stats import chisquare

from aiotranslate.decoding import DecodingOptions, decode
from aiotranslate.decoding.sampling import RandomSampler, row_generators

LOGITS = np.array([2.0, 1.5, 1.0, 0.3, 0.0, -0.5, -1.0, -2.5], dtype=np.float32)
DRAWS = 10000


def _expected(topk: int, topp: float, temperature: float) -> np.ndarray:
    """The sampling distribution by its definition, in float64."""
    z = LOGITS.astype(np.float64) / temperature
    order = np.argsort(-z)
    keep = np.zeros(len(z), dtype=bool)
    keep[order[: topk or len(z)]] = True
    p = np.where(keep, np.exp(z - z.max()), 0.0)
    p /= p.sum()
    mass_before = 0.0
    for i in order:  # nucleus: tokens while the mass before them is below topp
        if mass_before >= topp:
            p[i] = 0.0
        mass_before += p[i]
    return p / p.sum()


def _draw(sampler: RandomSampler, k: int = 1) -> np.ndarray:
    scores = np.tile(LOGITS, (DRAWS, 1))
    ids, values = sampler(scores, k, row_generators(1234, [(i, 0) for i in range(DRAWS)]))
    np.testing.assert_array_equal(values, LOGITS[ids])  # the input scores of the drawn ids
    return ids


@pytest.mark.parametrize(
    ("topk", "topp", "temperature"),
    [(0, 1.0, 1.0), (0, 1.0, 0.6), (3, 1.0, 1.0), (5, 1.0, 2.0), (0, 0.8, 1.0), (0, 0.6, 0.7), (4, 0.9, 1.5)],
)
def test_draws_follow_the_filtered_tempered_softmax(topk, topp, temperature):
    expected = _expected(topk, topp, temperature)
    counts = np.bincount(_draw(RandomSampler(topk, topp, temperature))[:, 0], minlength=len(LOGITS))
    assert not counts[expected == 0].any(), "a filtered-out token was drawn"
    support = expected > 0
    if support.sum() > 1:
        assert chisquare(counts[support], DRAWS * expected[support]).pvalue > 1e-3


def test_several_draws_per_row_are_distinct():
    ids = _draw(RandomSampler(0, 1.0, 1.0), k=3)
    assert all(len(set(row)) == 3 for row in ids.tolist())


def test_topk_one_sampler_is_argmax():
    ids = _draw(RandomSampler(1, 1.0, 0.7))
    assert (ids == int(np.argmax(LOGITS))).all()


@pytest.fixture(scope="module")
def adapter():
    return HFAdapter(tiny_decoder("gpt2", scale=1.0))  # flatter distributions: samples differ


PROMPTS = [[1, 5, 7, 9], [1, 3], [1, 8, 8, 4]]


def _generate(adapter, prompts, **options):
    options = DecodingOptions(max_length=8, return_prefix=False, return_scores=True, **options)
    return decode(adapter, adapter.start(len(prompts)), prompts, options)


def test_sampling_topk_one_is_greedy(adapter):
    greedy = _generate(adapter, PROMPTS)
    assert [r.hypotheses for r in _generate(adapter, PROMPTS, sampling_topk=1, sampling_temperature=0.5)] == [
        r.hypotheses for r in greedy
    ]
    assert [r.hypotheses for r in _generate(adapter, PROMPTS, sampling_topk=0, sampling_temperature=0)] == [
        r.hypotheses for r in greedy
    ]


def test_seed_reproduces_and_rows_do_not_depend_on_each_other(adapter):
    options = dict(sampling_topk=0, seed=7, num_hypotheses=3)
    first = _generate(adapter, PROMPTS, **options)
    assert [r.hypotheses for r in _generate(adapter, PROMPTS, **options)] == [r.hypotheses for r in first]
    # Same row position, other rows changed: the row's draws are its own.
    changed = _generate(adapter, [PROMPTS[0], [1, 40, 41, 42, 43], [1]], **options)
    assert changed[0].hypotheses == first[0].hypotheses
    other_seed = _generate(adapter, PROMPTS, **{**options, "seed": 8})
    assert [r.hypotheses for r in other_seed] != [r.hypotheses for r in first]


def test_sampled_hypotheses_are_sorted_by_score(adapter):
    for result in _generate(adapter, PROMPTS, sampling_topk=0, seed=3, num_hypotheses=4):
        assert len(result.hypotheses) == 4
        assert result.scores == sorted(result.scores, reverse=True)
        assert len({tuple(h) for h in result.hypotheses}) > 1


def test_beam_search_can_sample_its_candidates(adapter):
    results = _generate(adapter, PROMPTS, beam_size=3, num_hypotheses=2, sampling_topk=0, seed=5)
    again = _generate(adapter, PROMPTS, beam_size=3, num_hypotheses=2, sampling_topk=0, seed=5)
    assert [r.hypotheses for r in results] == [r.hypotheses for r in again]
    assert all(len(r.hypotheses) == 2 and r.scores == sorted(r.scores, reverse=True) for r in results)
