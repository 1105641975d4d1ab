"""The tensor-parallel model computes what the whole model computes: logits within 1e-5 (relative to
their scale; the row-parallel sums add in another order), greedy, beam and seeded sampling
token-identical, for GPT-2, Llama with grouped-query attention, Marian and BERT. Also: head counts
that do not split fail at load on every rank, and a failing call fails only that call."""

from __future__ import annotations

import numpy as np
import pytest
from ranks import RANK, SIZE, drive
from seq2seq_fixtures import max_rel_diff

from aiotranslate.decoding import DecodingOptions, decode
from aiotranslate.decoding.search import pad
from aiotranslate.models.decoder_only import DecoderOnlyModel
from aiotranslate.models.registry import load_model
from aiotranslate.runtime.mpi_driver import open_group

TOL = 1e-5
PROMPTS = [[1, 5, 7, 9, 11, 4], [1, 3], [1, 8, 8, 20]]
SEARCHES = {
    "greedy": DecodingOptions(max_length=8, end_ids=(2,), return_scores=True),
    "beam": DecodingOptions(max_length=8, end_ids=(2,), beam_size=3, num_hypotheses=2, return_scores=True),
    "sampling": DecodingOptions(max_length=8, end_ids=(2,), sampling_topk=0, seed=7, num_hypotheses=2),
}


def assert_same_results(ours, expected) -> None:
    assert [r.hypotheses for r in ours] == [r.hypotheses for r in expected]
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_decoder_only_logits_and_searches_match_the_whole_model(model_dirs, name):
    """Prefill of a ragged batch (all positions) and a decoding step give the whole model's logits;
    every search gives its tokens."""

    def check(model, reference):
        ids, lengths = pad(PROMPTS)
        states = [m.new_state(len(PROMPTS), capacity=16) for m in (model, reference)]
        prefill = [m.decode(s, ids, lengths, all_logits=True) for m, s in zip((model, reference), states)]
        assert prefill[0].shape == prefill[1].shape
        assert max_rel_diff(prefill[0], prefill[1]) < TOL
        step = [m.decode(s, np.array([[4], [6], [9]])) for m, s in zip((model, reference), states)]
        assert max_rel_diff(step[0], step[1]) < TOL
        for options in SEARCHES.values():
            results = [decode(m, m.new_state(len(PROMPTS)), PROMPTS, options) for m in (model, reference)]
            assert_same_results(*results)

    drive(model_dirs[name], check)


def test_marian_logits_attention_and_searches_match_the_whole_model(model_dirs):
    """Encoder, cross-attention (the alignment head, which rank 0 holds) and decoder."""
    sources = [[5, 9, 14, 3, 0], [7, 7, 0], [31, 2, 40, 11, 6, 0]]
    start = 52  # the tiny Marian's decoder start token (pad)

    def check(model, reference):
        src, lengths = pad(sources)
        states = [m.encode(src, lengths) for m in (model, reference)]
        ids = np.array([[start, 4, 6], [start, 8, 0], [start, 3, 3]])
        outputs = [m.decode_with_attention(s, ids, np.array([3, 2, 3])) for m, s in zip((model, reference), states)]
        assert max_rel_diff(outputs[0][0], outputs[1][0]) < TOL
        assert max_rel_diff(outputs[0][1], outputs[1][1]) < TOL
        searches = {**SEARCHES, "attention": DecodingOptions(max_length=8, end_ids=(0,), return_attention=True)}
        for options in searches.values():
            results = [decode(m, m.encode(src, lengths), [[start]] * 3, options) for m in (model, reference)]
            assert_same_results(*results)
        for a, b in zip(*results):  # the last search's alignments
            np.testing.assert_allclose(a.attention[0], b.attention[0], rtol=0, atol=TOL)

    drive(model_dirs["marian"], check)


def test_bert_hidden_states_and_pooler_match_the_whole_model(model_dirs):
    def check(model, reference):
        ids, lengths = pad([[2, 40, 17, 9, 3], [2, 5, 3]])
        (hidden, pooled), (expected_hidden, expected_pooled) = (m.forward(ids, lengths) for m in (model, reference))
        assert max_rel_diff(hidden, expected_hidden) < TOL
        assert max_rel_diff(pooled, expected_pooled) < TOL

    drive(model_dirs["bert"], check)


def test_key_value_heads_that_do_not_split_fail_at_load_on_every_rank(model_dirs):
    with pytest.raises(ValueError, match=f"needs a key/value head count that divides by {SIZE}"):
        open_group(lambda: load_model(model_dirs["llama_indivisible"]), 1)


def test_a_call_failing_everywhere_fails_alone(model_dirs):
    """An invalid input fails the same check on every rank: rank 0 raises it, and the group goes on."""

    def check(model, reference):
        state = model.new_state(1)
        with pytest.raises(ValueError, match="token ids must lie in"):
            model.decode(state, np.array([[1, 999]]))
        expected = reference.decode(reference.new_state(1), np.array([[1, 5]]))
        assert max_rel_diff(model.decode(state, np.array([[1, 5]])), expected) < TOL

    drive(model_dirs["llama"], check)


def test_a_rank_failing_alone_after_the_collectives_fails_the_call_on_rank_0(model_dirs):
    """Rank 1 raises once its shard finished a call: rank 0 reports that rank's error for that call,
    and the next calls work."""

    def fail_on_marker(shard: DecoderOnlyModel):
        whole = shard.decode

        def decode(state, ids, *args, **kwargs):
            logits = whole(state, ids, *args, **kwargs)
            if RANK == 1 and 13 in np.asarray(ids):
                raise RuntimeError("injected failure")
            return logits

        shard.decode = decode

    def check(model, reference):
        with pytest.raises(RuntimeError, match="rank 1 failed during decode: RuntimeError: injected failure"):
            model.decode(model.new_state(1), np.array([[1, 13]]))
        result = decode(model, model.new_state(1), [[1, 5]], SEARCHES["greedy"])
        assert_same_results(result, decode(reference, reference.new_state(1), [[1, 5]], SEARCHES["greedy"]))

    drive(model_dirs["llama"], check, fail_on_marker)
