"""The per-step hooks: on_step sees every emitted token in order (beam search: only tokens that can
no longer change) and should_stop is asked every step; either can stop one sequence, leaving the
others exactly as they would have been."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hf_reference import HFAdapter, tiny_decoder

from aiotranslate.decoding import DecodingOptions, decode

PROMPTS = [[1, 5, 7, 9], [1, 3], [1, 8, 8, 4, 4, 30]]
END_IDS = (19, 52)


@pytest.fixture(scope="module")
def model():
    return tiny_decoder("gpt2")


def _run(model, on_step=None, should_stop=None, **options):
    adapter = HFAdapter(model)
    options = DecodingOptions(max_length=10, end_ids=END_IDS, return_end_token=True, **options)
    return decode(adapter, adapter.start(len(PROMPTS)), PROMPTS, options, on_step, should_stop), adapter.calls


@pytest.mark.parametrize("return_prefix", [False, True])
def test_greedy_reports_every_token_in_order(model, return_prefix):
    steps = []
    results, _ = _run(model, steps.append, return_scores=True, return_prefix=return_prefix, length_penalty=0)
    for b, result in enumerate(results):
        mine = [s for s in steps if s.batch_id == b]
        hypothesis = result.hypotheses[0]
        generated = hypothesis[len(PROMPTS[b]) - 1 :] if return_prefix else hypothesis
        assert [s.token_id for s in mine] == generated
        assert [s.step for s in mine] == list(range(len(hypothesis) - len(generated), len(hypothesis)))
        assert [s.is_last for s in mine] == [False] * (len(mine) - 1) + [True]
        assert {s.hypothesis_id for s in mine} == {0} and all(s.token is None for s in mine)
        assert sum(s.log_prob for s in mine) == pytest.approx(result.scores[0], abs=1e-5)


def test_log_prob_is_none_without_scores(model):
    steps = []
    _run(model, steps.append)
    assert steps and all(s.log_prob is None for s in steps)


@pytest.mark.parametrize("beam_size, how", [(1, "on_step"), (1, "should_stop"), (3, "should_stop")])
def test_stopping_one_sequence_leaves_the_others_unchanged(model, beam_size, how):
    reference, _ = _run(model, beam_size=beam_size, return_prefix=False)
    row = int(np.argmax([len(r.hypotheses[0]) for r in reference]))
    assert len(reference[row].hypotheses[0]) > 3, "the case needs a row that would run past step 2"
    seen, asked = [], collections.Counter()

    def stop_at_step_2(step):
        seen.append(step)
        return step.batch_id == row and step.step == 2

    def stop_at_third_question(batch_id):  # asked once per step and live row: after 3 tokens
        asked[batch_id] += 1
        return batch_id == row and asked[batch_id] == 3

    hooks = {"on_step": (stop_at_step_2, None), "should_stop": (None, stop_at_third_question)}[how]
    results, calls = _run(model, *hooks, beam_size=beam_size, return_prefix=False)
    assert all(len(h) == 3 for h in results[row].hypotheses)
    others = [i for i in range(len(PROMPTS)) if i != row]
    assert [results[i].hypotheses for i in others] == [reference[i].hypotheses for i in others]
    if how == "on_step":
        assert max(s.step for s in seen if s.batch_id == row) == 2
    # The decode calls after step 2 leave the stopped row out.
    assert all(n <= beam_size * (len(PROMPTS) - 1) for n in calls[3:])


@pytest.mark.parametrize("return_prefix", [False, True])
@pytest.mark.parametrize("beam_size", [2, 4])
def test_beam_search_reports_the_best_hypothesis_once_its_tokens_are_settled(model, beam_size, return_prefix):
    """Each row reports a token only once no beam can revise it; in all, exactly its best hypothesis."""
    steps = []
    results, _ = _run(model, steps.append, beam_size=beam_size, return_prefix=return_prefix, return_scores=True)
    for b, result in enumerate(results):
        mine = [s for s in steps if s.batch_id == b]
        best = result.hypotheses[0]
        generated = best[len(PROMPTS[b]) - 1 :] if return_prefix else best
        assert [s.token_id for s in mine] == generated
        assert [s.step for s in mine] == list(range(len(best) - len(generated), len(best)))
        assert [s.is_last for s in mine] == [False] * (len(mine) - 1) + [True]
        assert all(s.hypothesis_id == 0 and s.log_prob is not None and s.log_prob <= 0 for s in mine)


def test_beam_search_reports_settled_tokens_before_the_end(model):
    """A long row's shared prefix is reported while the search still runs, not all at its end."""
    adapter = HFAdapter(model)
    calls_at_step = []
    options = DecodingOptions(max_length=12, min_length=12, end_ids=END_IDS, beam_size=2, return_prefix=False)
    decode(adapter, adapter.start(1), PROMPTS[:1], options, lambda step: calls_at_step.append(len(adapter.calls)))
    assert len(calls_at_step) == 12
    assert calls_at_step[0] < len(adapter.calls), "every token was reported after the last decode call"
