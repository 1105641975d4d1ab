"""Encoder-decoders: decoding from the decoder start token and from a forced target prefix matches
transformers (`decoder_input_ids`), greedy and beam; attention rows line up with the tokens;
`return_alternatives` continues each of the best first tokens.

Lengths: with return_prefix the prefix is returned and counts towards max_length (CTranslate2's
Translator), so max_length = len(prefix) + max_new_tokens; without it, max_length = max_new_tokens.
A returned prefix also counts in the length that normalizes the scores (CTranslate2's rule, where
transformers counts the new tokens only), so those cases compare with length_penalty=0.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hf_reference import HFAdapter, hf_generate, tiny_seq2seq

from aiotranslate.decoding import DecodingOptions, decode

SOURCES = [[5, 7, 9, 11, 3], [20, 21], [33, 8, 8, 40]]
PREFIXES = [[27, 13], [], [50]]
# The model's own end token and tokens it likes, so that hypotheses end at different steps.
END_IDS = {"marian": [0, 27, 44], "bart": [2, 13, 30]}


@pytest.fixture(scope="module", params=["marian", "bart"])
def model(request):
    return tiny_seq2seq(request.param)


def _start(model):
    return model.config.decoder_start_token_id


def _end_ids(model):
    return END_IDS[model.config.model_type]


@pytest.mark.parametrize("return_prefix", [True, False])
@pytest.mark.parametrize(("beam_size", "with_prefix"), [(1, False), (1, True), (3, False), (3, True)])
def test_matches_transformers_from_start_token_and_prefix(model, beam_size, with_prefix, return_prefix):
    prefixes = PREFIXES if with_prefix else [[] for _ in SOURCES]
    new_tokens = 8
    length_penalty = 0.0 if with_prefix and return_prefix else 1.0
    options = DecodingOptions(
        beam_size=beam_size, num_hypotheses=beam_size, patience=math.inf, length_penalty=length_penalty,
        max_length=new_tokens, end_ids=_end_ids(model), return_end_token=True, return_scores=True,
        return_prefix=return_prefix,
    )
    adapter = HFAdapter(model)
    start_tokens = [[_start(model)] + p for p in prefixes]
    # With a returned prefix, each row's budget grows by its prefix: one decode call per budget.
    results = []
    for source, tokens, prefix in zip(SOURCES, start_tokens, prefixes):
        row_options = options if not return_prefix else replace(options, max_length=new_tokens + len(prefix))
        results += decode(adapter, adapter.start([source]), [tokens], row_options)
    for source, tokens, prefix, result in zip(SOURCES, start_tokens, prefixes, results):
        sequences, out = hf_generate(
            model, source, decoder_prefix=tokens, num_beams=beam_size, num_return_sequences=beam_size,
            max_new_tokens=new_tokens, eos_token_id=_end_ids(model), early_stopping=False,
            length_penalty=length_penalty,
        )
        returned = prefix if return_prefix else []
        assert result.hypotheses == [returned + s for s in sequences]
        if beam_size > 1:
            np.testing.assert_allclose(result.scores, out.sequences_scores.numpy(), atol=1e-4)


def test_a_returned_prefix_counts_in_the_score_length_not_its_log_probability(model):
    """CTranslate2's scores: forced prefix tokens add no log-probability; returned, they count in the
    length (greedy: the same tokens either way, so the summed log-probabilities must agree)."""
    adapter = HFAdapter(model)
    start_tokens = [[_start(model)] + p for p in PREFIXES]
    scores = {}
    for return_prefix in (True, False):
        results = []
        for source, tokens in zip(SOURCES, start_tokens):
            options = DecodingOptions(max_length=8 + (len(tokens) - 1 if return_prefix else 0), end_ids=_end_ids(model),
                                      return_end_token=True, return_scores=True, return_prefix=return_prefix)  # fmt: skip
            results += decode(adapter, adapter.start([source]), [tokens], options)
        scores[return_prefix] = [(r.scores[0], len(r.hypotheses[0])) for r in results]
    for prefix, (with_score, with_length), (without_score, without_length) in zip(PREFIXES, scores[True], scores[False]):
        assert with_length == without_length + len(prefix)
        np.testing.assert_allclose(with_score * with_length, without_score * without_length, rtol=1e-5)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_biased_decoding_favours_the_prefix_without_forcing_it(model, beam_size):
    """prefix_bias_beta (CTranslate2's biased decoding): while a beam follows the prefix, its next
    token's probability is (1 - beta) p + beta * onehot(prefix token); after, plain log p. Each
    returned score is checked against transformers' probabilities of the returned tokens."""
    adapter = HFAdapter(model)
    source, start = SOURCES[0], _start(model)
    plain = decode(adapter, adapter.start([source]), [[start]], DecodingOptions(beam_size=beam_size, max_length=6,
                   end_ids=_end_ids(model), return_end_token=True))[0].hypotheses[0]  # fmt: skip
    prefix = [t for t in (45, 46, 47) if t != plain[0]][:2]  # not what the model picks first
    results = {}
    for beta in (0.999, 0.3):
        options = DecodingOptions(beam_size=beam_size, num_hypotheses=beam_size, max_length=6, end_ids=_end_ids(model),
                                  return_end_token=True, return_scores=True, prefix_bias_beta=beta)  # fmt: skip
        result = decode(adapter, adapter.start([source]), [[start, *prefix]], options)[0]
        for tokens, score in zip(result.hypotheses, result.scores):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([[start, *tokens[:-1]]]))
            log_p = torch.log_softmax(logits.logits[0].double(), -1).numpy()
            total, following = 0.0, True
            for t, token in enumerate(tokens):
                p = np.exp(log_p[t, token])
                if following and t < len(prefix):
                    p = (1 - beta) * p + beta * (token == prefix[t])
                    following = token == prefix[t]
                total += np.log(p)
            np.testing.assert_allclose(score, total / len(tokens), rtol=1e-4)
        results[beta] = result.hypotheses[0]
    assert results[0.999][:2] == prefix  # nearly forced
    assert plain[0] not in prefix


def test_batch_of_ragged_prefixes_decodes_like_each_row(model):
    """Prefixes of different lengths prefill together (ragged lengths) and give each row's result."""
    adapter = HFAdapter(model)
    start_tokens = [[_start(model)] + p for p in PREFIXES]
    options = DecodingOptions(beam_size=2, max_length=6, end_ids=_end_ids(model), return_scores=True)
    batched = decode(adapter, adapter.start(SOURCES), start_tokens, options)
    alone = [decode(adapter, adapter.start([s]), [t], options)[0] for s, t in zip(SOURCES, start_tokens)]
    assert [r.hypotheses for r in batched] == [r.hypotheses for r in alone]
    np.testing.assert_allclose([r.scores for r in batched], [r.scores for r in alone], atol=1e-6)


def _cross_attention(model, source, decoder_ids):
    """(T, S) last-layer cross-attention averaged over heads, of a full forward pass."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([decoder_ids]),
                    output_attentions=True, use_cache=False)
    return out.cross_attentions[-1].mean(dim=1)[0].numpy()


@pytest.mark.parametrize("beam_size", [1, 2])
def test_attention_rows_are_those_that_predicted_each_token(model, beam_size):
    """Row j of a hypothesis' attention is the attention of the decoder position that chose token j
    (the one reading token j - 1), prefix tokens included."""
    adapter = HFAdapter(model)
    start_tokens = [[_start(model)] + p for p in PREFIXES]
    options = DecodingOptions(beam_size=beam_size, max_length=6, min_length=2, end_ids=_end_ids(model),
                              return_attention=True, return_end_token=False)
    results = decode(adapter, adapter.start(SOURCES), start_tokens, options)
    for source, tokens, result in zip(SOURCES, start_tokens, results):
        hypothesis = result.hypotheses[0]
        expected = _cross_attention(model, source, [tokens[0]] + hypothesis)[: len(hypothesis)]
        # The batch's padded source width, zeros beyond this source: the API layer trims.
        assert result.attention[0].shape == (len(hypothesis), max(map(len, SOURCES)))
        np.testing.assert_allclose(result.attention[0][:, : len(source)], expected, atol=1e-5)
        assert not result.attention[0][:, len(source) :].any()


@pytest.mark.parametrize("beam_size", [1, 3])
def test_coverage_penalty_adds_gnmt_term(model, beam_size):
    """score = sum(log_probs) / length ** lp + beta * sum_j log(min(sum_i a_ij, 1))."""
    beta, lp = 0.4, 0.7
    adapter = HFAdapter(model)
    start_tokens = [[_start(model)] for _ in SOURCES]
    options = DecodingOptions(beam_size=beam_size, max_length=7, end_ids=_end_ids(model), length_penalty=lp,
                              coverage_penalty=beta, return_scores=True, return_attention=True,
                              return_end_token=True, return_logits_vocab=True)
    for result in decode(adapter, adapter.start(SOURCES), start_tokens, options):
        hypothesis, attention = result.hypotheses[0], result.attention[0].astype(np.float64)
        log_probs = torch.log_softmax(torch.from_numpy(result.logits[0]).double(), -1).numpy()
        raw = log_probs[np.arange(len(hypothesis)), hypothesis].sum()
        coverage = attention.sum(axis=0)
        penalty = beta * np.log(np.minimum(coverage[coverage > 0], 1.0)).sum()
        assert result.scores[0] == pytest.approx(raw / len(hypothesis) ** lp + penalty, abs=1e-4)


@pytest.mark.parametrize("beam_size", [1, 2])
def test_alternatives_expand_the_best_first_tokens_then_continue(model, beam_size):
    """After the prefix, the 3 most likely tokens (no end token) each start their own search."""
    adapter = HFAdapter(model)
    prefix = PREFIXES[0]
    tokens = [_start(model)] + prefix
    end_ids = _end_ids(model)
    options = DecodingOptions(return_alternatives=True, num_hypotheses=3, max_length=len(prefix) + 6,
                              beam_size=beam_size, end_ids=end_ids, return_end_token=True, return_scores=True,
                              length_penalty=0)
    result = decode(adapter, adapter.start(SOURCES[:1]), [tokens], options)[0]

    with torch.no_grad():
        logits = model(input_ids=torch.tensor(SOURCES[:1]), decoder_input_ids=torch.tensor([tokens])).logits[0, -1]
    logits[end_ids] = -math.inf
    log_probs = torch.log_softmax(logits.double(), -1)
    first = torch.topk(log_probs, 3).indices.tolist()
    assert [h[len(prefix)] for h in result.hypotheses] == first
    for alternative, hypothesis, score in zip(first, result.hypotheses, result.scores):
        continuation, out = hf_generate(model, SOURCES[0], decoder_prefix=tokens + [alternative], max_new_tokens=5,
                                        eos_token_id=end_ids, num_beams=beam_size, length_penalty=0.0,
                                        early_stopping=False)
        assert hypothesis == prefix + [alternative] + continuation[0]
        if beam_size > 1:
            continuation_score = out.sequences_scores[0].double()
        else:
            steps = torch.log_softmax(torch.stack(out.scores)[:, 0].double(), -1)
            continuation_score = steps[torch.arange(len(continuation[0])), continuation[0]].sum()
        assert score == pytest.approx(float(log_probs[alternative] + continuation_score), abs=1e-4)


def test_alternatives_below_the_expansion_probability_are_dropped(model):
    adapter = HFAdapter(model)
    options = DecodingOptions(return_alternatives=True, num_hypotheses=4, max_length=4, return_scores=True,
                              min_alternative_expansion_prob=0.05, length_penalty=0, end_ids=_end_ids(model))
    results = decode(adapter, adapter.start(SOURCES), [[_start(model)]] * len(SOURCES), options)
    everything = decode(adapter, adapter.start(SOURCES), [[_start(model)]] * len(SOURCES),
                        replace(options, min_alternative_expansion_prob=0.0))
    for kept, full in zip(results, everything):
        assert kept.hypotheses == full.hypotheses[: len(kept.hypotheses)]
        assert len(full.hypotheses) == 4
