"""Loading model directories: what loads (f32 as read-only file views, f16/bf16 upcast, sharded
checkpoints, generation defaults) and the ModelLoadError of everything that must not, naming the file
and the tensor or key at fault."""

import json
import shutil

import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from hf_fixtures import VOCAB, save, tiny_llama
from parity import check_full_forward
from safetensors.numpy import load_file, save_file

from aiotranslate.convert import Checkpoint
from aiotranslate.errors import ModelLoadError
from aiotranslate.models import load_model, supported_model_types

IDS = [5, 17, 3, 60, 9, 22, 41]
Q_PROJ = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    tiny_llama(path)
    return path


@pytest.fixture
def model_dir(llama_dir, tmp_path):
    """A private copy of the tiny Llama directory, free to break."""
    return shutil.copytree(llama_dir, tmp_path / "model")


def edit_weights(directory, edit):
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def edit_config(directory, **changes):
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_float32_weights_are_read_only_views_of_the_file(llama_dir):
    ckpt = Checkpoint(llama_dir)
    w = ckpt.get("lm_head.weight", (VOCAB, 24))
    assert isinstance(w, np.memmap) and w.dtype == np.float32
    assert not w.flags.writeable
    model = load_model(llama_dir)
    assert isinstance(model.lm_head.weight, np.memmap) and not model.lm_head.weight.flags.writeable
    assert not model.layers[0].attention.qkv.weight.flags.writeable  # fused copy, read-only too


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints_load_as_float32(tmp_path, dtype):
    save(tiny_llama(tmp_path / "f32").to(dtype), tmp_path / "half")
    model = load_model(tmp_path / "half")
    assert model.lm_head.weight.dtype == np.float32
    # The reference: the same rounded weights, upcast by transformers, computing in float32.
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "half", dtype=torch.float32).eval()
    check_full_forward(model, hf, IDS)


def test_bfloat16_tensor_is_upcast_exactly(tmp_path):
    values = np.array([[1.5, -2.25], [3e-3, 65504.0]], dtype=np.float32)
    save_file({"w": values.astype(ml_dtypes.bfloat16)}, tmp_path / "model.safetensors")
    got = Checkpoint(tmp_path).get("w", (2, 2))
    np.testing.assert_array_equal(got, values.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_sharded_checkpoint_loads(tmp_path):
    hf = tiny_llama(tmp_path / "f32")
    save(hf, tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    check_full_forward(load_model(tmp_path / "sharded"), hf, IDS)


def test_missing_shard_names_the_index(tmp_path):
    save(tiny_llama(tmp_path / "f32"), tmp_path / "sharded", max_shard_size="20KB")
    shard = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(ModelLoadError, match=f"index.json.*{shard.name}.*missing"):
        load_model(tmp_path / "sharded")


def test_generation_config_defaults(model_dir):
    (model_dir / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [2, 7], "bos_token_id": 1, "max_new_tokens": 9, "top_k": 4, "custom": 1})
    )
    gen = load_model(model_dir).generation_config
    assert (gen.eos_token_ids, gen.bos_token_id, gen.max_new_tokens, gen.top_k) == ((2, 7), 1, 9, 4)
    assert gen.num_beams == 1 and gen.other == {"custom": 1}


def test_bad_words_ids_from_generation_config_or_config(model_dir):
    edit_config(model_dir, bad_words_ids=[[5], [6, 7]])  # where OPUS-MT checkpoints keep them
    assert load_model(model_dir).generation_config.bad_words_ids == ((5,), (6, 7))
    (model_dir / "generation_config.json").write_text(json.dumps({"bad_words_ids": [[9]]}))
    assert load_model(model_dir).generation_config.bad_words_ids == ((9,),)
    (model_dir / "generation_config.json").write_text(json.dumps({"bad_words_ids": [5]}))
    with pytest.raises(ModelLoadError, match="generation_config.json: bad_words_ids must be a list of non-empty lists"):
        load_model(model_dir)


def test_unknown_model_type_lists_the_supported_ones(model_dir):
    edit_config(model_dir, model_type="transformer-xl")
    with pytest.raises(ModelLoadError, match="config.json.*'transformer-xl'.*supported: ") as e:
        load_model(model_dir)
    assert all(t in str(e.value) for t in supported_model_types())


def test_missing_config_and_missing_key(model_dir):
    edit_config(model_dir, hidden_size=None)
    with pytest.raises(ModelLoadError, match="config.json: missing key 'hidden_size'"):
        load_model(model_dir)
    (model_dir / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json: missing"):
        load_model(model_dir)


def test_missing_tensor_names_file_and_tensor(model_dir):
    edit_weights(model_dir, lambda t: t.pop(Q_PROJ))
    with pytest.raises(ModelLoadError, match=f"model.safetensors: missing tensor '{Q_PROJ}'"):
        load_model(model_dir)


def test_wrong_shape_names_the_tensor(model_dir):
    edit_weights(model_dir, lambda t: t.update({Q_PROJ: t[Q_PROJ][:, :-1].copy()}))
    expected = rf"model.safetensors: tensor '{Q_PROJ}' has shape \[24, 23\], expected \[24, 24\]"
    with pytest.raises(ModelLoadError, match=expected):
        load_model(model_dir)


def test_wrong_dtype_names_the_tensor(model_dir):
    edit_weights(model_dir, lambda t: t.update({Q_PROJ: t[Q_PROJ].astype(np.int32)}))
    with pytest.raises(ModelLoadError, match=f"'{Q_PROJ}' has dtype I32"):
        load_model(model_dir)


def test_unexpected_tensor_is_refused(model_dir):
    # A bias the config does not announce would be silently dropped: refuse instead.
    edit_weights(model_dir, lambda t: t.update({"model.layers.1.self_attn.q_proj.bias": np.zeros(24, np.float32)}))
    with pytest.raises(ModelLoadError, match="unexpected tensor.*layers.1.self_attn.q_proj.bias"):
        load_model(model_dir)


@pytest.mark.parametrize("keep", [4, 200, -100])
def test_truncated_file_names_the_file(model_dir, keep):
    path = model_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep > 0 else data[:keep])
    with pytest.raises(ModelLoadError, match="model.safetensors: (not a safetensors file|truncated file)"):
        load_model(model_dir)


def test_pytorch_pickle_is_refused_with_a_conversion_hint(model_dir):
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(b"\x80\x04 not unpickled")
    with pytest.raises(ModelLoadError, match="pytorch_model.bin.*safetensors"):
        load_model(model_dir)


def test_unsupported_settings_are_refused(model_dir):
    edit_config(model_dir, rope_parameters={"rope_type": "longrope", "rope_theta": 1e4})
    with pytest.raises(ModelLoadError, match="config.json: rope parameters.*'longrope' is not supported"):
        load_model(model_dir)
    edit_config(model_dir, rope_parameters=None, hidden_act="gelu")
    with pytest.raises(ModelLoadError, match="hidden_act 'gelu'"):
        load_model(model_dir)


def test_legacy_rope_keys(model_dir, llama_dir):
    """Older configs spell rotary settings rope_theta + rope_scaling {type: ...}."""
    edit_config(model_dir, rope_parameters=None, rope_theta=500.0, rope_scaling={"type": "linear", "factor": 2.0})
    rotary = load_model(model_dir).layers[0].attention.rotary
    assert rotary.params["rope_type"] == "linear" and rotary.params["rope_theta"] == 500.0
    np.testing.assert_allclose(rotary.inv_freq, 500.0 ** -(np.arange(0, 4, 2) / 4) / 2, rtol=1e-7)
