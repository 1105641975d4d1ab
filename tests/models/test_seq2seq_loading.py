"""How the BART-family loader reads checkpoints: tied tables stored under several names, Marian's
stored sinusoidal tables, untied output embeddings, start and forced tokens from either config
file, and refusal of tensors it does not know."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from seq2seq_fixtures import MAX_POSITIONS, build_seq2seq, hf_logits, load_hf, max_rel_diff

from aiotranslate import ops
from aiotranslate.errors import ModelLoadError
from aiotranslate.models import load_model

SRC = np.array([5, 9, 3, 17, 8], dtype=np.int32)


def _logits(model, tgt):
    state = model.encode(SRC[None])
    return model.decode(state, np.asarray(tgt, dtype=np.int32)[None], all_logits=True)[0]


def _rewrite(root, change):
    tensors = load_file(root / "model.safetensors")
    change(tensors)
    save_file(tensors, root / "model.safetensors")


def test_tied_tables_stored_under_every_name(tmp_path):
    """Older conversions store the shared table as shared, encoder/decoder embed_tokens and lm_head."""
    root = build_seq2seq("bart", tmp_path)
    hf = load_hf(root)

    def duplicate(t):
        for name in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"):
            t[name] = t["model.shared.weight"].copy()

    _rewrite(root, duplicate)
    tgt = [2, 7, 11, 4]
    assert max_rel_diff(_logits(load_model(root), tgt), hf_logits(hf, SRC, np.array(tgt))) < 1e-4


def test_marian_stored_position_tables_are_used(tmp_path):
    root = build_seq2seq("marian", tmp_path)
    hf = load_hf(root)
    table = ops.sinusoidal_table(MAX_POSITIONS, hf.config.d_model)
    np.testing.assert_allclose(table, hf.model.encoder.embed_positions.weight.detach().numpy(), atol=1e-7)

    def store(t):
        t["model.encoder.embed_positions.weight"] = table
        t["model.decoder.embed_positions.weight"] = table

    _rewrite(root, store)
    tgt = [hf.config.pad_token_id, 7, 11]
    assert max_rel_diff(_logits(load_model(root), tgt), hf_logits(hf, SRC, np.array(tgt))) < 1e-4


def test_untied_output_embeddings(tmp_path):
    root = build_seq2seq("bart", tmp_path, tie_word_embeddings=False)
    hf = load_hf(root)
    tgt = [2, 7, 11, 4]
    assert max_rel_diff(_logits(load_model(root), tgt), hf_logits(hf, SRC, np.array(tgt))) < 1e-4


def test_start_token_falls_back_to_bos_and_forced_bos_to_config(tmp_path):
    root = build_seq2seq("mbart", tmp_path)
    (root / "generation_config.json").unlink()
    config = json.loads((root / "config.json").read_text())
    config.update(decoder_start_token_id=None, bos_token_id=4, forced_bos_token_id=40)
    (root / "config.json").write_text(json.dumps(config))
    model = load_model(root)
    assert (model.decoder_start_token_id, model.forced_bos_token_id) == (4, 40)


def test_unknown_tensor_is_refused(tmp_path):
    root = build_seq2seq("m2m100", tmp_path)
    _rewrite(root, lambda t: t.update({"model.encoder.layers.0.adapter.weight": np.zeros((2, 2), np.float32)}))
    with pytest.raises(ModelLoadError, match="adapter"):
        load_model(root)


def test_unknown_activation_is_a_load_error(tmp_path):
    root = build_seq2seq("marian", tmp_path)
    config = json.loads((root / "config.json").read_text())
    config["activation_function"] = "not-an-activation"
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="not-an-activation"):
        load_model(root)
