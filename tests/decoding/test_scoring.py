"""`score_sequences`: the log-probability of every token given the ones before it, as transformers'
forward pass gives it, for a ragged batch in one decoder pass."""

from __future__ import annotations

import numpy as np
import torch
from hf_reference import HFAdapter, tiny_decoder, tiny_seq2seq

from aiotranslate.decoding import score_sequences

SEQUENCES = [[1, 5, 7, 9, 2], [1, 3], [1, 8, 8, 4, 4, 30, 2], [1]]


def _reference(model, sequence, **inputs):
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            logits = model(**inputs, decoder_input_ids=torch.tensor([sequence[:-1]])).logits[0]
        else:
            logits = model(input_ids=torch.tensor([sequence[:-1]])).logits[0]
    log_probs = torch.log_softmax(logits.double(), -1).numpy()
    return log_probs[np.arange(len(sequence) - 1), sequence[1:]]


def test_language_model_scores_match_transformers():
    model = tiny_decoder("llama")
    adapter = HFAdapter(model)
    scores = score_sequences(adapter, adapter.start(len(SEQUENCES)), SEQUENCES)
    assert adapter.calls == [len(SEQUENCES)]
    for sequence, ours in zip(SEQUENCES, scores):
        assert ours.dtype == np.float32 and ours.shape == (len(sequence) - 1,)
        if len(sequence) > 1:
            np.testing.assert_allclose(ours, _reference(model, sequence), atol=1e-4)


def test_translation_scores_match_transformers():
    model = tiny_seq2seq("marian")
    adapter = HFAdapter(model)
    sources = [[5, 7, 9], [20, 21, 22, 23], [33], [4, 4]]
    start = model.config.decoder_start_token_id
    targets = [[start] + s[1:] for s in SEQUENCES]
    scores = score_sequences(adapter, adapter.start(sources), targets)
    for source, target, ours in zip(sources, targets, scores):
        if len(target) > 1:
            np.testing.assert_allclose(ours, _reference(model, target, input_ids=torch.tensor([source])), atol=1e-4)


def test_nothing_to_score():
    adapter = HFAdapter(tiny_decoder("gpt2"))
    assert [s.shape for s in score_sequences(adapter, adapter.start(2), [[1], []])] == [(0,), (0,)]
    assert adapter.calls == []
