"""Beam search is token-identical to transformers' beam search `generate`, scores within 1e-4.

The finishing rules map as `beam`'s docstring says: early_stopping=True <-> patience=1,
early_stopping=False <-> patience=inf; with length_penalty=0, early_stopping=False <-> any patience.
Banning processors run on logits before the log-softmax here; transformers bans on log-probs, so
its `renormalize_logits=True` is the equivalent (same tokens, same renormalized scores).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hf_reference import HFAdapter, hf_generate, tiny_decoder

from aiotranslate.decoding import DecodingOptions, decode

PROMPTS = [[1, 5, 7, 9], [1, 3], [1, 8, 8, 4, 4, 30]]
END_IDS = [13, 19, 52]  # frequent in this model's outputs: hypotheses finish at many steps


@pytest.fixture(scope="module")
def model():
    return tiny_decoder("gpt2")


def _compare(model, options: DecodingOptions, **theirs):
    """Our batch against transformers example by example."""
    adapter = HFAdapter(model)
    results = decode(adapter, adapter.start(len(PROMPTS)), PROMPTS, options)
    for prompt, result in zip(PROMPTS, results):
        sequences, out = hf_generate(
            model, prompt, num_beams=options.beam_size, num_return_sequences=options.num_hypotheses,
            max_new_tokens=options.max_length, eos_token_id=list(options.end_ids),
            length_penalty=options.length_penalty, **theirs,
        )
        assert result.hypotheses == sequences, prompt
        np.testing.assert_allclose(result.scores, out.sequences_scores.numpy(), atol=1e-4)
    return adapter


@pytest.mark.parametrize(
    ("length_penalty", "early_stopping"), [(0.0, False), (1.0, True), (1.0, False), (2.0, True), (2.0, False)]
)
@pytest.mark.parametrize("beam_size", [2, 4])
def test_beam_search_matches_transformers(model, beam_size, length_penalty, early_stopping):
    options = DecodingOptions(
        beam_size=beam_size, num_hypotheses=beam_size, length_penalty=length_penalty,
        patience=1 if early_stopping else math.inf, max_length=10, end_ids=END_IDS[:2],
        return_prefix=False, return_end_token=True, return_scores=True,
    )
    _compare(model, options, early_stopping=early_stopping)


@pytest.mark.parametrize("num_hypotheses", [1, 2])
def test_fewer_hypotheses_than_beams(model, num_hypotheses):
    options = DecodingOptions(
        beam_size=3, num_hypotheses=num_hypotheses, length_penalty=1.0, patience=math.inf, max_length=10,
        end_ids=END_IDS, return_prefix=False, return_end_token=True, return_scores=True,
    )
    _compare(model, options, early_stopping=False)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ({"min_length": 6}, {"min_new_tokens": 6}),
        ({"no_repeat_ngram_size": 2}, {"no_repeat_ngram_size": 2}),
        ({"suppress_sequences": [[28, 36], [16]]}, {"bad_words_ids": [[28, 36], [16]]}),
    ],
)
def test_beam_search_with_bans_matches_renormalized_transformers(model, ours, theirs):
    options = DecodingOptions(
        beam_size=3, num_hypotheses=2, length_penalty=1.0, patience=math.inf, max_length=9, end_ids=END_IDS,
        return_prefix=False, return_end_token=True, return_scores=True, **ours,
    )
    _compare(model, options, early_stopping=False, renormalize_logits=True, **theirs)


@pytest.mark.parametrize("early_stopping", [True, False])
def test_beam_search_matches_transformers_on_llama(early_stopping):
    options = DecodingOptions(
        beam_size=3, num_hypotheses=2, length_penalty=1.0, patience=1 if early_stopping else math.inf,
        max_length=10, end_ids=[35, 57], return_prefix=False, return_end_token=True, return_scores=True,
    )
    _compare(tiny_decoder("llama"), options, early_stopping=early_stopping)


def test_finished_rows_leave_the_batch(model):
    """After the prefill, every decode call carries beam_size rows per example still searching."""
    options = DecodingOptions(beam_size=2, length_penalty=0, max_length=10, end_ids=END_IDS, return_prefix=False,
                              return_end_token=True, return_scores=True)
    adapter = _compare(model, options, early_stopping=False)
    assert adapter.calls[0] == len(PROMPTS)
    assert all(n % 2 == 0 for n in adapter.calls[1:])
    assert sorted(adapter.calls[1:], reverse=True) == adapter.calls[1:]
    assert adapter.calls[-1] < 2 * len(PROMPTS), "no example finished before another"
