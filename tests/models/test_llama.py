"""Llama-family parity with transformers: Llama, Mistral, Qwen2, Qwen3; GQA ratios 1, 3 and full MQA;
biases, tied and untied heads, Qwen3 q/k norms, sliding windows and the rope scaling variants."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import transformers
from hf_fixtures import VOCAB, tiny_llama
from parity import check_full_forward, check_incremental, check_ragged, check_select
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from aiotranslate.convert import HFConfig, rope_parameters
from aiotranslate.layers import rope_frequencies
from aiotranslate.models import load_model

MAX_POS = 32

VARIANTS = {
    # GQA ratio 3 (6 query heads over 2 KV heads), untied head.
    "llama-gqa3": ("llama", {}),
    # Ratio 1 (plain multi-head, 3 heads), all biases, tied embeddings.
    "llama-mha-bias-tied": (
        "llama",
        dict(
            num_attention_heads=3,
            num_key_value_heads=3,
            attention_bias=True,
            mlp_bias=True,
            tie_word_embeddings=True,
        ),
    ),
    # Full MQA: 3 query heads share one KV head; head_dim from config, not hidden / heads.
    "llama-mqa-head-dim": ("llama", dict(num_attention_heads=3, num_key_value_heads=1, head_dim=6)),
    # Every layer windowed to 5 tokens: longer rows take the masked path.
    "mistral-window": ("mistral", dict(sliding_window=5)),
    # q/k/v biases; the second layer windowed (max_window_layers=1).
    "qwen2-bias-window": ("qwen2", dict(use_sliding_window=True, sliding_window=4, max_window_layers=1)),
    # q/k RMS norms per head, head_dim 10 != 24 / 6, tied embeddings.
    "qwen3-qk-norm": ("qwen3", dict(head_dim=10, tie_word_embeddings=True)),
    "rope-linear": ("llama", dict(rope_parameters=dict(rope_type="linear", factor=2.0, rope_theta=500.0))),
    "rope-dynamic": ("llama", dict(rope_parameters=dict(rope_type="dynamic", factor=3.0, rope_theta=10000.0))),
    "rope-llama3": (
        "llama",
        dict(
            rope_parameters=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=8,
                rope_theta=100.0,
            )
        ),
    ),
    "rope-yarn": (
        "llama",
        dict(rope_parameters=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=8, rope_theta=1000.0)),
    ),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory):
    model_type, overrides = VARIANTS[request.param]
    path = tmp_path_factory.mktemp(request.param)
    hf = tiny_llama(path, model_type, max_position_embeddings=MAX_POS, **overrides)
    return load_model(path), hf


def ids_of(n, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, n).tolist()


def test_full_forward_up_to_the_position_limit(variant):
    check_full_forward(*variant, ids_of(MAX_POS, seed=1))


def test_prefill_then_incremental_decode_matches_full_forward(variant):
    check_incremental(*variant, ids_of(13, seed=2), prefix=6)


def test_ragged_batch_of_7_matches_each_row_alone(variant):
    rng = np.random.default_rng(3)
    rows = [ids_of(int(n), seed=30 + i) for i, n in enumerate(rng.integers(4, 16, 7))]
    check_ragged(*variant, rows, prompts=[2, 1, 4, 3, 1, 6, 2])


def test_select_reorders_and_repeats_rows(variant):
    prompts = [ids_of(5, 40), ids_of(7, 41), ids_of(3, 42)]
    continuations = [ids_of(2, 43), ids_of(1, 44), ids_of(3, 45), ids_of(2, 46)]
    check_select(*variant, prompts, [1, 0, 0, 2], continuations)


def test_rotary_runs_past_max_position_embeddings(tmp_path):
    """Rotary models have no hard limit (transformers extends the tables too); dynamic NTK scaling
    then uses the frequencies for the whole sequence's length."""
    for rope in (None, dict(rope_type="dynamic", factor=2.0, rope_theta=10000.0)):
        path = tmp_path / str(rope is None)
        hf = tiny_llama(path, max_position_embeddings=16, rope_parameters=rope)
        model = load_model(path)
        assert model.max_positions is None
        check_full_forward(model, hf, ids_of(27, seed=5))


@pytest.mark.parametrize(
    "rope, seq_len",
    [
        (dict(rope_type="linear", factor=4.0), None),
        (dict(rope_type="dynamic", factor=2.0), 100),
        (
            dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                 original_max_position_embeddings=8192),
            None,
        ),
        (dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=16), None),
        (dict(rope_type="yarn", factor=8.0, beta_fast=16, mscale=1.0, mscale_all_dim=0.7, truncate=False), None),
        (dict(rope_type="yarn", factor=2.0, attention_factor=1.3, original_max_position_embeddings=16), None),
    ],
    ids=["linear", "dynamic", "llama3", "yarn", "yarn-mscale-untruncated", "yarn-attention-factor"],
)
def test_rope_frequencies_match_transformers(rope, seq_len):
    """inv_freq and attention scaling equal transformers' for each scaling type, on a real-size head."""
    values = dict(hidden_size=4096, num_attention_heads=32, max_position_embeddings=64)
    values["rope_parameters"] = dict(rope_theta=5e5, **rope)
    hf_init = ROPE_INIT_FUNCTIONS[rope["rope_type"]]
    hf_inv, hf_scaling = hf_init(transformers.LlamaConfig(**values), "cpu", seq_len=seq_len)
    params = rope_parameters(HFConfig(values, "config.json"))
    inv, scaling = rope_frequencies(params, 128, 64, seq_len)
    np.testing.assert_allclose(inv, hf_inv.numpy(), rtol=2e-6)
    assert scaling == pytest.approx(hf_scaling, rel=1e-12)


def test_states_in_threads_share_the_weights(variant):
    """Each worker thread owns its state; the model's read-only weights serve them all at once."""
    model, _ = variant
    prompts = [ids_of(9, seed=50 + i) for i in range(4)]

    def run(ids):
        state = model.new_state(1, n_threads=2)
        return model.decode(state, np.array([ids]), all_logits=True)

    alone = [run(ids) for ids in prompts]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(run, prompts))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
