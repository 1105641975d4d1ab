"""What `decode` returns: prefixes and prompts, lengths, end tokens, static prompts, options checks."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hf_reference import HFAdapter, tiny_decoder

from aiotranslate.decoding import DecodingOptions, decode, truncate_input
from aiotranslate.ops import reference

PROMPTS = [[1, 5, 7, 9], [1, 3], [1, 8, 8, 4, 4, 30]]
END_IDS = (19, 52)


@pytest.fixture(scope="module")
def adapter():
    return HFAdapter(tiny_decoder("gpt2"))


def _decode(adapter, prompts=PROMPTS, **options):
    options = DecodingOptions(**{"end_ids": END_IDS, "max_length": 10, **options})
    return decode(adapter, adapter.start(len(prompts)), prompts, options)


@pytest.mark.parametrize("beam_size", [1, 2])
def test_returned_prefix_counts_towards_lengths(adapter, beam_size):
    """With return_prefix (Generator include_prompt_in_result, Translator target_prefix) the prompt
    after the start token is returned and counts towards max_length and min_length."""
    without = _decode(adapter, beam_size=beam_size, return_prefix=False, max_length=6, min_length=4)
    with_prefix = [
        _decode(adapter, [p], beam_size=beam_size, max_length=6 + len(p) - 1, min_length=4 + len(p) - 1)[0]
        for p in PROMPTS
    ]
    for prompt, a, b in zip(PROMPTS, without, with_prefix):
        assert b.hypotheses == [prompt[1:] + h for h in a.hypotheses]
        assert len(a.hypotheses[0]) >= 4 and len(b.hypotheses[0]) <= 6 + len(prompt) - 1


def test_prefix_longer_than_max_length_is_cut(adapter):
    results = _decode(adapter, max_length=3, return_scores=True)
    assert results[2].hypotheses == [PROMPTS[2][1:4]] and results[2].scores == [0.0]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_end_token_is_returned_only_on_request(adapter, beam_size):
    kept = _decode(adapter, beam_size=beam_size, return_prefix=False, return_end_token=True, return_scores=True)
    cut = _decode(adapter, beam_size=beam_size, return_prefix=False, return_scores=True)
    for a, b in zip(kept, cut):
        assert [h[:-1] if h[-1] in END_IDS else h for h in a.hypotheses] == b.hypotheses
        assert a.scores == b.scores  # the end token is scored and counted either way


def test_static_prompt_is_context_shared_by_every_row(adapter):
    """A static prompt decodes like the same tokens at the head of every prompt."""
    static = [1, 22, 23]
    prompts = [p[1:] for p in PROMPTS]
    shared = _decode(adapter, prompts, static_prompt=static, return_prefix=False, return_scores=True,
                     repetition_penalty=1.5)
    inline = _decode(adapter, [static + p for p in prompts], return_prefix=False, return_scores=True,
                     repetition_penalty=1.5)
    assert [r.hypotheses for r in shared] == [r.hypotheses for r in inline]
    np.testing.assert_allclose([r.scores for r in shared], [r.scores for r in inline], atol=1e-6)


def test_disabled_ids_never_appear(adapter):
    common = _decode(adapter, return_prefix=False)[2].hypotheses[0][0]
    results = _decode(adapter, return_prefix=False, disable_ids=[common], beam_size=2, num_hypotheses=2)
    assert all(common not in h for r in results for h in r.hypotheses)


def test_logits_and_scores_are_empty_unless_asked(adapter):
    result = _decode(adapter, beam_size=2)[0]
    assert result.scores == [] and result.attention == [] and result.logits == []
    assert _decode(adapter, return_attention=True)[0].attention == []  # the model has no attention hook


def test_beam_logits_follow_each_hypothesis(adapter):
    result = _decode(adapter, [PROMPTS[0]], beam_size=3, num_hypotheses=3, return_logits_vocab=True,
                     return_prefix=False, return_end_token=True)[0]
    for hypothesis, logits in zip(result.hypotheses, result.logits):
        assert logits.shape == (len(hypothesis), adapter.vocab_size)
        # Replaying the hypothesis gives the same logits at every step.
        state = adapter.start(1)
        replay = adapter.decode(state, np.array([PROMPTS[0] + hypothesis[:-1]]), all_logits=True)[0]
        np.testing.assert_allclose(logits, replay[len(PROMPTS[0]) - 1 :], atol=1e-5)


def test_empty_batch_and_bad_inputs(adapter):
    assert decode(adapter, adapter.start(0), [], DecodingOptions()) == []
    with pytest.raises(ValueError, match="start token"):
        _decode(adapter, [[1], []])
    with pytest.raises(ValueError, match="attention"):
        _decode(adapter, coverage_penalty=0.2)


@pytest.mark.parametrize(
    "bad",
    [
        {"beam_size": 0},
        {"patience": 0},
        {"num_hypotheses": 3, "beam_size": 2},
        {"max_length": 0},
        {"min_length": 5, "max_length": 4},
        {"repetition_penalty": 0},
        {"no_repeat_ngram_size": -1},
        {"sampling_topp": 0},
        {"sampling_topk": -1},
        {"sampling_temperature": -1},
        {"suppress_sequences": [[]]},
        {"min_alternative_expansion_prob": 2},
        {"sampling_temperature": float("nan")},
        {"length_penalty": float("nan")},
    ],
)
def test_options_refuse_bad_values(bad):
    with pytest.raises(ValueError):
        DecodingOptions(**bad)


@pytest.mark.parametrize("bad", [{"beam_size": "2"}, {"max_length": 2.5}, {"sampling_topp": "0.9"}, {"patience": None}])
def test_options_refuse_bad_types_by_name(bad):
    (name,) = bad
    with pytest.raises(TypeError, match=name):
        DecodingOptions(**bad)


def test_options_accept_what_ctranslate2_accepts():
    assert DecodingOptions(num_hypotheses=4, sampling_topk=0).num_hypotheses == 4  # sampled hypotheses
    assert DecodingOptions(beam_size=np.int64(2), length_penalty=1, patience=math.inf).beam_size == 2
    assert DecodingOptions(num_hypotheses=4, return_alternatives=True).num_hypotheses == 4
    assert DecodingOptions(beam_size=2, patience=2, num_hypotheses=4).max_candidates == 4
    options = DecodingOptions(end_ids=[2, 3], suppress_sequences=[[4, 5]])
    assert options.end_ids == (2, 3) and options.suppress_sequences == ((4, 5),)
    assert replace(options, beam_size=3).beam_size == 3


def test_truncate_input():
    assert truncate_input([1, 2, 3, 4], 2) == [1, 2]
    assert truncate_input([1, 2, 3], 0) == [1, 2, 3]
    assert truncate_input([1, 2, 3, 4, 0], 3, end_ids=(0,)) == [1, 2, 0]  # a final end token stays last
    assert truncate_input([1, 2, 3, 4], 3, end_ids=(0,)) == [1, 2, 3]
    assert truncate_input([1, 2, 0], 3, end_ids=(0,)) == [1, 2, 0]
    with pytest.raises(ValueError):
        truncate_input([1], -1)


def test_greedy_scores_are_log_softmax_of_the_processed_logits(adapter):
    """Greedy search scores its token as logit - logsumexp(logits): the log_softmax value of the chosen
    token in the logits after the processors (which return_logits_vocab returns), summed over steps."""
    results = _decode(adapter, return_scores=True, return_logits_vocab=True, return_prefix=False,
                      return_end_token=True, length_penalty=0, min_length=3, repetition_penalty=1.3)
    for result in results:
        logits, tokens = result.logits[0], result.hypotheses[0]
        log_probs = reference.softmax(logits.astype(np.float64), log=True)[np.arange(len(tokens)), tokens]
        np.testing.assert_allclose(result.scores[0], log_probs.sum(), rtol=1e-5)


def test_greedy_score_of_a_fully_banned_vocabulary_is_minus_inf(adapter):
    results = _decode(adapter, [PROMPTS[0]], disable_ids=tuple(range(adapter.vocab_size)), max_length=2,
                      return_scores=True, return_prefix=False)
    assert results[0].scores == [-np.inf]
