"""GPT-2 parity with transformers: learned positions, pre-norm LayerNorm, gelu_new, tied LM head."""

import numpy as np
import pytest
from hf_fixtures import VOCAB, tiny_gpt2
from parity import (
    assert_close,
    check_full_forward,
    check_incremental,
    check_ragged,
    check_select,
    hf_logits,
    right_padded,
)

from aiotranslate.models import DecoderOnlyModel, load_model

N_POSITIONS = 32


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    hf = tiny_gpt2(path, n_positions=N_POSITIONS)
    return load_model(path), hf


def ids_of(n, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, n).tolist()


def test_loads_as_decoder_only_with_tied_head(gpt2):
    model, _ = gpt2
    assert isinstance(model, DecoderOnlyModel)
    assert model.vocab_size == VOCAB and model.max_positions == N_POSITIONS
    assert model.lm_head.weight is model.embedding.table
    assert model.generation_config.eos_token_ids == (2,)


def test_full_forward_matches_transformers(gpt2):
    check_full_forward(*gpt2, ids_of(13))


def test_prefill_then_incremental_decode_matches_full_forward(gpt2):
    check_incremental(*gpt2, ids_of(12, seed=1), prefix=5)


def test_ragged_batch_of_7_matches_each_row_alone(gpt2):
    rng = np.random.default_rng(2)
    rows = [ids_of(int(n), seed=10 + i) for i, n in enumerate(rng.integers(3, 15, 7))]
    check_ragged(*gpt2, rows, prompts=[1, 2, 3, 5, 1, 7, 2])


def test_select_reorders_and_repeats_rows(gpt2):
    prompts = [ids_of(4, 20), ids_of(6, 21), ids_of(2, 22)]
    continuations = [ids_of(3, 23), ids_of(1, 24), ids_of(2, 25), ids_of(3, 26)]
    check_select(*gpt2, prompts, [2, 0, 0, 1], continuations)


def test_inputs_up_to_the_position_limit_then_refused(gpt2):
    model, hf = gpt2
    ids = ids_of(N_POSITIONS, seed=3)
    check_full_forward(model, hf, ids)
    state = model.new_state(1)
    model.decode(state, np.array([ids]))
    with pytest.raises(ValueError, match="past the model's 32"):
        model.decode(state, np.array([[1]]))
    assert state.lengths.tolist() == [N_POSITIONS]  # a refused call changes nothing


def test_full_row_waits_while_another_decodes(gpt2):
    """A row at the position limit, given no token, must not break the rows still decoding."""
    model, hf = gpt2
    full, short = ids_of(N_POSITIONS, seed=6), ids_of(N_POSITIONS - 2, seed=7)
    state = model.new_state(2)
    model.decode(state, *right_padded([full, short[:-2]]))
    logits = model.decode(state, np.array([[0, 0], short[-2:]]), np.array([0, 2]))
    assert state.lengths.tolist() == [N_POSITIONS, N_POSITIONS - 2]
    assert_close(logits[0], hf_logits(hf, full)[-1])
    assert_close(logits[1], hf_logits(hf, short)[-1])


@pytest.mark.parametrize(
    "overrides",
    [
        dict(tie_word_embeddings=False),
        dict(scale_attn_by_inverse_layer_idx=True, activation_function="relu"),
        dict(n_head=1, n_embd=20, n_inner=36, activation_function="gelu"),
    ],
    ids=["untied", "inverse-layer-scale-relu", "one-head-gelu"],
)
def test_config_variants_match_transformers(tmp_path, overrides):
    hf = tiny_gpt2(tmp_path, **overrides)
    model = load_model(tmp_path)
    check_full_forward(model, hf, ids_of(9, seed=4))
    check_incremental(model, hf, ids_of(8, seed=5), prefix=3)


def test_a_ragged_prompt_computes_its_tokens_only(gpt2, monkeypatch):
    """A ragged call runs compact: the linears see the valid tokens only; all_logits gives zeros at
    padded slots and each row's logits where it has tokens."""
    from aiotranslate import ops

    model, hf = gpt2
    rows = [ids_of(5, 30), ids_of(2, 31), ids_of(9, 32)]
    ids, lengths = right_padded(rows)
    seen, linear = [], ops.linear
    monkeypatch.setattr(ops, "linear", lambda x, *a, **k: seen.append(x.shape[0]) or linear(x, *a, **k))
    logits = model.decode(model.new_state(3), ids, lengths, all_logits=True)
    assert seen[0] == sum(lengths)  # the first layer's QKV projection
    for i, row in enumerate(rows):
        assert_close(logits[i, : len(row)], hf_logits(hf, row))
        assert not logits[i, len(row) :].any()
