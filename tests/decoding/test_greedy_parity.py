"""Greedy search is token-identical to transformers' greedy `generate` on tiny decoder-only models,
with every logits processor, and its per-step log-probs match within 1e-4.

Our batch decodes ragged prompts together; transformers runs each prompt alone (batching there needs
left padding, which is its own business). Lengths map as: max_length <-> max_new_tokens,
min_length <-> min_new_tokens (return_prefix=False: the prompt is not part of the result).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_reference import HFAdapter, hf_generate, tiny_decoder

from aiotranslate.decoding import DecodingOptions, decode

PROMPTS = [[1, 5, 7, 9], [1, 3], [1, 8, 8, 4, 4, 30], [1, 44, 12]]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    return tiny_decoder(request.param)


def _end_ids(model, count: int) -> list[int]:
    """End tokens the model does produce: tokens of its unconstrained greedy outputs, so that rows
    finish at different steps."""
    seen = []
    for prompt in PROMPTS:
        sequences, _ = hf_generate(model, prompt, max_new_tokens=6, eos_token_id=[])
        seen += [t for t in sequences[0][2:] if t not in seen]
    return seen[:count]


# (our options, transformers generate kwargs)
CASES = {
    "plain": ({}, {}),
    "repetition_penalty": ({"repetition_penalty": 1.7}, {"repetition_penalty": 1.7}),
    "no_repeat_ngram": ({"no_repeat_ngram_size": 2}, {"no_repeat_ngram_size": 2}),
    "min_length": ({"min_length": 7}, {"min_new_tokens": 7}),
    "suppress_sequences": (
        {"suppress_sequences": [[13], [19, 19], [28, 36, 13]]},
        {"bad_words_ids": [[13], [19, 19], [28, 36, 13]]},
    ),
    "all": (
        {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "min_length": 3, "suppress_sequences": [[16, 16]]},
        {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "min_new_tokens": 3, "bad_words_ids": [[16, 16]]},
    ),
}


@pytest.mark.parametrize(
    ("case", "n_end"), [("plain", 1), ("plain", 3)] + [(case, 2) for case in CASES if case != "plain"]
)
def test_greedy_matches_transformers(model, case, n_end):
    ours, theirs = CASES[case]
    end_ids = _end_ids(model, n_end)
    if "suppress_sequences" in ours:
        # transformers drops a bad word that is an end token alone; we would suppress it (CTranslate2).
        kept = [s for s in ours["suppress_sequences"] if not (len(s) == 1 and s[0] in end_ids)]
        ours, theirs = {**ours, "suppress_sequences": kept}, {**theirs, "bad_words_ids": kept}
    options = DecodingOptions(
        max_length=12, end_ids=end_ids, return_prefix=False, return_end_token=True, return_scores=True,
        return_logits_vocab=True, length_penalty=0, **ours,
    )
    adapter = HFAdapter(model)
    results = decode(adapter, adapter.start(len(PROMPTS)), PROMPTS, options)
    for prompt, result in zip(PROMPTS, results):
        sequences, out = hf_generate(model, prompt, max_new_tokens=12, eos_token_id=end_ids, **theirs)
        assert result.hypotheses == sequences, prompt
        # transformers' greedy `scores` are the processed logits of each step: ours are too.
        processed = torch.stack(out.scores[: len(sequences[0])])[:, 0].numpy()
        np.testing.assert_allclose(result.logits[0], processed, atol=1e-4)
        log_probs = torch.log_softmax(torch.from_numpy(processed).double(), -1).numpy()
        expected = log_probs[np.arange(len(sequences[0])), sequences[0]].sum()
        assert result.scores[0] == pytest.approx(expected, abs=1e-4)


def test_finished_rows_leave_the_batch(model):
    """Each decode call after the prefill carries only the rows still decoding."""
    end_ids = _end_ids(model, 2)
    adapter = HFAdapter(model)
    options = DecodingOptions(max_length=10, end_ids=end_ids, return_prefix=False, return_end_token=True)
    results = decode(adapter, adapter.start(len(PROMPTS)), PROMPTS, options)
    lengths = [len(r.hypotheses[0]) for r in results]
    assert len(set(lengths)) > 1, "the case needs rows of different lengths"
    expected = [len(PROMPTS)] + [sum(n > step for n in lengths) for step in range(1, max(lengths))]
    assert adapter.calls == expected


def test_length_penalty_normalizes_greedy_scores(model):
    """CTranslate2 normalizes greedy scores too: sum(log_probs) / length ** length_penalty."""
    adapter = HFAdapter(model)
    raw, normalized = (
        decode(adapter, adapter.start(1), PROMPTS[:1],
               DecodingOptions(max_length=5, return_prefix=False, return_scores=True, length_penalty=lp))[0]
        for lp in (0.0, 1.5)
    )
    assert raw.hypotheses == normalized.hypotheses
    assert normalized.scores[0] == pytest.approx(raw.scores[0] / 5**1.5, rel=1e-6)
