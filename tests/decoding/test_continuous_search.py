"""Continuous batching in the decoding core: `state.extend` appends rows that then decode as they
would alone, and rows joining a running `GreedySearch` between its steps get exactly the tokens
that `decode` gives them alone (greedy and seeded sampling), on our own GPT-2, Llama and Marian."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aiotranslate.decoding import DecodingOptions, GreedySearch, begin, collect, decode
from aiotranslate.decoding.search import pad
from aiotranslate.models.registry import load_model

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from hf_fixtures import tiny_gpt2, tiny_llama  # noqa: E402
from seq2seq_fixtures import build_seq2seq  # noqa: E402

PROMPTS = [[1, 5, 7, 9], [1, 3], [1, 8, 8, 4, 4, 30], [1, 44, 12], [1, 9]]
SOURCES = [[5, 7, 9, 11, 3], [20, 21], [33, 8, 8, 40, 2, 17, 6], [12, 3], [40, 41, 42]]


@pytest.fixture(scope="module", params=["gpt2", "llama", "marian"])
def model(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "gpt2":
        tiny_gpt2(root, n_positions=64)
    elif request.param == "llama":
        tiny_llama(root, max_position_embeddings=64)
    else:
        build_seq2seq("marian", root)
    return load_model(root)


def is_seq2seq(model) -> bool:
    return hasattr(model, "encode")


def start(model, examples: list[int]):
    """A fresh state for these examples (of PROMPTS / SOURCES) and their start tokens."""
    if not is_seq2seq(model):
        return model.new_state(len(examples)), [PROMPTS[i] for i in examples]
    src, lengths = pad([SOURCES[i] for i in examples])
    return model.encode(src, lengths), [[model.decoder_start_token_id]] * len(examples)


def test_extended_state_decodes_its_rows_as_the_separate_states_do(model):
    """Rows of two states at different lengths (and source widths), joined, then stepped together:
    the logits of every row equal those of its own state stepped alone."""
    a, a_start = start(model, [0, 2])
    b, b_start = start(model, [1, 4, 3])
    a2, _ = start(model, [0, 2])
    b2, _ = start(model, [1, 4, 3])
    for state, tokens in ((a, a_start), (a2, a_start), (b, b_start), (b2, b_start)):
        ids, lengths = pad(tokens)
        model.decode(state, ids, lengths)
    for state in (a, a2):  # a runs two steps ahead of b
        model.decode(state, np.array([[7], [8]], dtype=np.int32))
        model.decode(state, np.array([[9], [3]], dtype=np.int32))
    a.extend(b)
    assert a.batch_size == 5 and a.lengths.tolist() == a2.lengths.tolist() + b2.lengths.tolist()
    step = np.array([[4], [5], [6], [11], [12]], dtype=np.int32)
    joined = model.decode(a, step)
    alone = np.concatenate([model.decode(a2, step[:2]), model.decode(b2, step[2:])])
    np.testing.assert_allclose(joined, alone, rtol=1e-5, atol=1e-5)
    a.select(np.array([4, 0], dtype=np.int32))  # rows keep working after the join
    b2.select(np.array([2], dtype=np.int32))
    a2.select(np.array([0], dtype=np.int32))
    joined = model.decode(a, np.array([[13], [14]], dtype=np.int32))
    alone = np.concatenate([model.decode(b2, np.array([[13]], dtype=np.int32)),
                            model.decode(a2, np.array([[14]], dtype=np.int32))])
    np.testing.assert_allclose(joined, alone, rtol=1e-5, atol=1e-5)


def options_for(model, **extra) -> DecodingOptions:
    return DecodingOptions(end_ids=(2, 17, 30), max_length=12, min_length=1, return_prefix=False,
                           return_scores=True, **extra)


def alone(model, examples, options):
    state, tokens = start(model, examples)
    return decode(model, state, tokens, options)


def run_with_joins(model, options, cohorts: dict[int, list[int]]):
    """Cohort k (examples) joins before step k; -> results per cohort, in cohort order, and the
    steps at which each cohort's last row finished."""
    search = GreedySearch(model, options)
    found: dict[int, dict[int, object]] = {k: {} for k in cohorts}
    rows: dict[int, list] = {}
    ended: dict[int, int] = {}
    step = 0
    while True:
        finished = []
        if step in cohorts:
            state, tokens = start(model, cohorts[step])
            started = begin(model, state, tokens, options, seed_ids=list(range(len(tokens))))
            rows[step] = started.rows
            finished += search.add(state, started, tag=step)
        if not search.num_rows and step >= max(cohorts):
            break
        if search.num_rows:
            finished += search.step()
        for f in finished:
            found[f.tag][f.index] = f.hypothesis
            if len(found[f.tag]) == len(rows[f.tag]):
                ended[f.tag] = step
        step += 1
    results = {
        k: collect(model, options, len(cohorts[k]), [(row.batch_id, [found[k][i]]) for i, row in enumerate(rows[k])])
        for k in cohorts
    }
    return results, ended


@pytest.mark.parametrize("sampling", [False, True])
def test_rows_joining_a_running_search_decode_as_alone(model, sampling):
    extra = {"sampling_topk": 0, "sampling_temperature": 0.8, "seed": 3, "num_hypotheses": 2} if sampling else {}
    options = options_for(model, **extra)
    cohorts = {0: [0, 2], 2: [1], 3: [4, 3]}
    results, _ = run_with_joins(model, options, cohorts)
    for k, examples in cohorts.items():
        expected = alone(model, examples, options)
        assert [r.hypotheses for r in results[k]] == [r.hypotheses for r in expected]
        for got, want in zip(results[k], expected):
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4, atol=1e-4)


def test_a_short_cohort_leaves_before_a_long_one(model):
    """Cohort lengths are their own: a short cohort joining a long one ends first, at once."""
    long = replace(options_for(model), min_length=12)
    search = GreedySearch(model, long)
    state, tokens = start(model, [0])
    search.add(state, begin(model, state, tokens, long), tag="long")
    search.step()
    short = replace(long, max_length=2, min_length=1)
    state, tokens = start(model, [1])
    search.add(state, begin(model, state, tokens, short), tag="short", options=short)
    assert [f.tag for f in search.step()] == []
    assert [f.tag for f in search.step()] == ["short"]
    assert search.num_rows == 1


def test_attention_rows_cannot_join(model):
    if not is_seq2seq(model):
        pytest.skip("attention over a source: encoder-decoders only")
    options = options_for(model, return_attention=True)
    search = GreedySearch(model, options)
    for examples in ([0], [1]):
        state, tokens = start(model, examples)
        started = begin(model, state, tokens, options)
        if examples == [1]:
            with pytest.raises(ValueError, match="attention"):
                search.add(state, started)
        else:
            search.add(state, started)


def test_rows_that_choose_tokens_differently_cannot_join(model):
    """Only options that act on a row alone may differ between the rows of one search."""
    options = options_for(model)
    search = GreedySearch(model, options)
    state, tokens = start(model, [0])
    search.add(state, begin(model, state, tokens, options))
    state, tokens = start(model, [1])
    other = replace(options, repetition_penalty=1.5)
    with pytest.raises(ValueError, match="ROW_OPTIONS"):
        search.add(state, begin(model, state, tokens, other), options=other)
    assert search.num_rows == 1
