"""Encoder-only models (BERT, RoBERTa, DistilBERT, XLM-RoBERTa) against transformers on tiny random
checkpoints: last hidden states and pooled output for ragged batches (each row against
transformers on that row alone), token types, batch 1 at the position limit."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from encoder_fixtures import ENCODER_KINDS, MAX_LENGTH, build_encoder, hf_encode, load_hf_encoder
from seq2seq_fixtures import max_rel_diff, random_ids

from aiotranslate.models import load_model
from aiotranslate.models.bert import EncoderModel

TOL = 1e-4


@pytest.fixture(scope="module", params=ENCODER_KINDS)
def pair(request, tmp_path_factory):
    kind = request.param
    root = build_encoder(kind, tmp_path_factory.mktemp(kind), seed=10 + ENCODER_KINDS.index(kind))
    return kind, load_model(root), load_hf_encoder(kind, root)


def _batch(hf, rng, lengths, with_types: bool):
    pad = hf.config.pad_token_id
    rows = [random_ids(rng, n, hf.config.vocab_size, (pad,)) for n in lengths]
    ids = np.full((len(rows), max(lengths)), pad, dtype=np.int32)
    types = np.zeros_like(ids)
    type_rows = []
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        t = rng.integers(0, getattr(hf.config, "type_vocab_size", 1), len(r)).astype(np.int32)
        types[i, : len(r)] = t
        type_rows.append(t)
    return rows, ids, np.asarray(lengths, dtype=np.int32), (types if with_types else None), type_rows


def test_loads_as_encoder_model(pair):
    kind, model, hf = pair
    assert isinstance(model, EncoderModel)
    assert model.hidden_size == (hf.config.dim if kind == "distilbert" else hf.config.hidden_size)
    assert model.max_positions == MAX_LENGTH
    assert (model.pooler is None) == (getattr(hf, "pooler", None) is None)


@pytest.mark.parametrize("with_types", [False, True])
def test_ragged_batch_matches_each_row_alone(pair, with_types):
    kind, model, hf = pair
    if with_types and kind == "distilbert":
        pytest.skip("DistilBERT has no token types")
    rng = np.random.default_rng(20)
    rows, ids, lengths, types, type_rows = _batch(hf, rng, [5, 1, MAX_LENGTH, 9, 2, 13, 7], with_types)
    hidden, pooled = model.forward(ids, lengths, types)
    assert hidden.shape == (7, MAX_LENGTH, model.hidden_size)
    worst = 0.0
    for i, r in enumerate(rows):
        ref_hidden, ref_pooled = hf_encode(hf, r, type_rows[i] if with_types else None)
        worst = max(worst, max_rel_diff(hidden[i, : len(r)], ref_hidden))
        assert not hidden[i, len(r) :].any()
        if ref_pooled is None:
            assert pooled is None
        else:
            worst = max(worst, max_rel_diff(pooled[i], ref_pooled))
    assert worst < TOL


def test_batch_of_one_at_the_position_limit(pair):
    _, model, hf = pair
    rows, ids, lengths, _, _ = _batch(hf, np.random.default_rng(21), [MAX_LENGTH], False)
    hidden, _ = model.forward(ids)
    assert max_rel_diff(hidden[0], hf_encode(hf, rows[0])[0]) < TOL
    with pytest.raises(ValueError, match="position"):
        model.forward(np.full((1, MAX_LENGTH + 1), 5, dtype=np.int32))


def test_bad_arguments_are_refused(pair):
    _, model, _ = pair
    with pytest.raises(ValueError, match="lengths"):
        model.forward(np.ones((2, 3), dtype=np.int32), np.array([1, 4]))
    with pytest.raises(ValueError, match="out of range"):
        model.forward(np.full((1, 2), 10**6, dtype=np.int32))
    with pytest.raises(ValueError, match="2-D"):
        model.forward(np.ones(3, dtype=np.int32))


def test_legacy_gamma_beta_layer_norm_names(tmp_path):
    """Old BERT checkpoints name LayerNorm parameters gamma / beta; transformers renames them."""
    from safetensors.numpy import load_file, save_file

    root = build_encoder("bert_mlm", tmp_path, seed=30)
    hf = load_hf_encoder("bert_mlm", root)
    tensors = load_file(root / "model.safetensors")
    renamed = {n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): t
               for n, t in tensors.items()}  # fmt: skip
    save_file(renamed, root / "model.safetensors")
    ids = random_ids(np.random.default_rng(31), 9, hf.config.vocab_size, (0,))
    hidden, _ = load_model(root).forward(ids[None])
    assert max_rel_diff(hidden[0], hf_encode(hf, ids)[0]) < TOL


def test_a_padded_batch_computes_its_tokens_only(pair, monkeypatch):
    """A batch with padding runs compact: the linears (packed, the float32 compute form) see the valid
    tokens only, and each row's output is that row's alone (to rounding: attention's sums over the
    batch's longest row are another tiling of the same terms)."""
    from aiotranslate import ops
    from aiotranslate.layers.quantized import quantize_model

    _, model, hf = pair
    model = quantize_model(copy.deepcopy(model), "float32")
    rows, ids, lengths, _, _ = _batch(hf, np.random.default_rng(22), [5, 1, 9, 2], False)
    seen, linear = [], ops.linear
    monkeypatch.setattr(ops, "linear", lambda x, *a, **k: seen.append(x.shape[0]) or linear(x, *a, **k))
    hidden, _ = model.forward(ids, lengths)
    assert set(seen[:2]) == {sum(lengths)}  # the first layer's QKV and output projections
    for i, r in enumerate(rows):
        alone, _ = model.forward(np.asarray([r], dtype=np.int32))
        np.testing.assert_allclose(hidden[i, : len(r)], alone[0], rtol=1e-5, atol=1e-5)
        assert not hidden[i, len(r) :].any()
    empty, _ = model.forward(ids, np.zeros_like(lengths))  # no token at all: nothing to compact
    assert empty.shape == hidden.shape and not empty.any()
