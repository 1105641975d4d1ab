"""End to end: aiotranslate's search (`decoding.decode`) over our encoder-decoders gives the same
tokens as transformers' `generate` on the same tiny checkpoints, greedy and beam, for a ragged
batch of sources decoded together (transformers decodes each source alone). Multilingual models
start with their forced target-language token, read from the checkpoint, as a target prefix; it
adds log-probability 0 in transformers, so beam scores compare with length_penalty 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from seq2seq_fixtures import build_seq2seq, load_hf, random_ids

from aiotranslate.decoding import DecodingOptions, decode
from aiotranslate.models import load_model

NEW_TOKENS = 8
SOURCE_LENGTHS = (6, 2, 11)


@pytest.fixture(scope="module", params=["marian", "bart", "mbart", "nllb"])
def pair(request, tmp_path_factory):
    root = build_seq2seq(request.param, tmp_path_factory.mktemp(request.param), seed=3)
    return load_model(root), load_hf(root)


def _sources(hf):
    rng = np.random.default_rng(8)
    avoid = (hf.config.pad_token_id, hf.config.eos_token_id)
    sources = [random_ids(rng, n, hf.config.vocab_size, avoid) for n in SOURCE_LENGTHS]
    src = np.full((len(sources), max(SOURCE_LENGTHS)), hf.config.pad_token_id, dtype=np.int32)
    for i, s in enumerate(sources):
        src[i, : len(s)] = s
    return sources, src


def _decode(model, src, **options):
    forced = [] if model.forced_bos_token_id is None else [model.forced_bos_token_id]
    start = [model.decoder_start_token_id, *forced]
    options = DecodingOptions(
        end_ids=model.generation_config.eos_token_ids, return_end_token=True, max_length=NEW_TOKENS, **options
    )
    return decode(model, model.encode(src, np.array(SOURCE_LENGTHS)), [start] * len(src), options)


@torch.no_grad()
def _generate(hf, source, **kwargs):
    ids = torch.tensor([source.tolist()], dtype=torch.long)
    # No forced end token at max_length (a transformers-only processor): both stop at the length limit.
    return hf.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        forced_eos_token_id=None,
        pad_token_id=hf.config.pad_token_id,
        return_dict_in_generate=True,
        output_scores=True,
        **kwargs,
    )


def _cut(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def test_greedy_matches_generate(pair):
    """Random tiny models repeat one token forever: no token may repeat (a ban, applied alike by
    both), so the outputs vary."""
    model, hf = pair
    sources, src = _sources(hf)
    results = _decode(model, src, no_repeat_ngram_size=1)
    for source, result in zip(sources, results):
        expected = _generate(hf, source, no_repeat_ngram_size=1).sequences[0].tolist()
        assert [model.decoder_start_token_id, *result.hypotheses[0]] == expected


def test_beam_matches_generate(pair):
    """Three hypotheses each, with their scores: every beam step reorders the state's rows."""
    model, hf = pair
    sources, src = _sources(hf)
    results = _decode(
        model, src, beam_size=3, num_hypotheses=3, patience=math.inf, length_penalty=0.0, return_scores=True
    )
    eos = hf.config.eos_token_id
    for source, result in zip(sources, results):
        out = _generate(hf, source, num_beams=3, num_return_sequences=3, early_stopping=False, length_penalty=0.0)
        expected = [_cut(s[1:], eos) for s in out.sequences.tolist()]
        assert result.hypotheses == expected
        np.testing.assert_allclose(result.scores, out.sequences_scores.numpy(), atol=1e-4)


def test_state_select_keeps_each_row_on_its_source(pair):
    """Rows expanded into groups (beams) and reordered within them keep their source and tokens:
    each row's next logits are those of its own history decoded alone."""
    model, hf = pair
    sources, src = _sources(hf)
    rng = np.random.default_rng(5)
    avoid = (hf.config.pad_token_id, hf.config.eos_token_id)
    first = random_ids(rng, len(sources), hf.config.vocab_size, avoid)
    state = model.encode(src, np.array(SOURCE_LENGTHS))
    model.decode(state, first[:, None])
    state.select(np.array([0, 0, 1, 1, 2, 2]))  # groups of 2 rows per source
    second = random_ids(rng, 6, hf.config.vocab_size, avoid)
    model.decode(state, second[:, None])
    order = np.array([1, 0, 2, 2, 5, 4])  # within the groups: the memory stays as it is
    state.select(order)
    third = random_ids(rng, 6, hf.config.vocab_size, avoid)
    logits = model.decode(state, third[:, None])
    for row, parent in enumerate(order):
        source = parent // 2
        alone = model.encode(src[source : source + 1, : SOURCE_LENGTHS[source]], np.array([SOURCE_LENGTHS[source]]))
        history = np.array([[first[source], second[parent], third[row]]])
        np.testing.assert_allclose(model.decode(alone, history)[0], logits[row], rtol=1e-4, atol=1e-4)
