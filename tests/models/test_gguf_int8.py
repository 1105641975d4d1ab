"""GGUF Q8_0 weights run as stored: with compute type int8 (and "default", which a Q8_0 file resolves
to), every Q8_0 projection becomes a weight-only `Int8Linear` (the Llama family's int8: float32
activations) holding the file's int8 values and float16 scales, never re-quantized from floats; its
logits stay close to the dequantized float32 path, which itself equals transformers on the same file."""

from __future__ import annotations

import numpy as np
import pytest

from aiotranslate._native import load
from aiotranslate.api.compute_type import apply, resolve
from aiotranslate.layers.quantized import Int8Linear
from aiotranslate.models import load_model
from aiotranslate.ops.quantized import Int8WeightOnly

gguf = pytest.importorskip("gguf", reason="GGUF support needs the gguf package (pip install gguf)")

from gguf_fixtures import write_tiny_gguf  # noqa: E402  (imports gguf)

from aiotranslate.convert.gguf import GGUFFile, stored_compute_type  # noqa: E402
from aiotranslate.convert.gguf_quants import Q8_0, dequantize, q8_0_values  # noqa: E402

needs_int8 = pytest.mark.skipif(load("_qgemm") is None, reason="native kernels not built")
LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output", "token_embd")
SHAPE = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope="module", params=["untied", "tied"])
def q8_0_file(request, tmp_path_factory):
    """A tiny Llama with every weight matrix in Q8_0."""
    directory = tmp_path_factory.mktemp(request.param)
    return write_tiny_gguf(directory, types=dict.fromkeys(LINEARS, "Q8_0"), tie_word_embeddings=request.param == "tied",
                           **SHAPE)[0]  # fmt: skip


def logits(model, ids: np.ndarray) -> np.ndarray:
    state = model.new_state(len(ids), 1, capacity=ids.shape[1])
    return model.decode(state, ids, all_logits=True)


def test_q8_0_values_are_the_stored_blocks(tmp_path):
    w = np.random.default_rng(0).standard_normal((6, 96)).astype(np.float32)
    raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
    q, d = q8_0_values(raw, w.shape)
    assert q.dtype == np.int8 and d.shape == (6, 3)
    np.testing.assert_array_equal(q.reshape(6, 3, 32) * d[..., None], dequantize(raw, Q8_0, w.shape).reshape(6, 3, 32))
    np.testing.assert_array_equal(d, d.astype(np.float16))  # the file's float16 scales, exactly
    with pytest.raises(ValueError, match="whole blocks of 32"):
        q8_0_values(raw, (96, 6))


def test_a_q8_0_file_defaults_to_int8(q8_0_file):
    path = q8_0_file
    model = load_model(path)
    assert stored_compute_type(GGUFFile(path)) == model.stored_compute_type == "int8_float32"
    assert resolve("default", stored=model.stored_compute_type) == ("int8_float32" if load("_qgemm") else "float32")


@needs_int8
def test_int8_runs_the_files_own_blocks(q8_0_file):
    path = q8_0_file
    model = apply(load_model(path), "int8_float32")
    file = GGUFFile(path)
    layers = {"blk.1.ffn_down.weight": model.layers[1].ffn.down, "blk.0.attn_output.weight": model.layers[0].attention.out}
    layers["output.weight" if "output.weight" in file.tensors else "token_embd.weight"] = model.lm_head
    for name, layer in layers.items():
        raw = file.raw(name)
        assert isinstance(layer, Int8Linear) and isinstance(layer.weight, Int8WeightOnly)
        for ours, theirs in zip(layer.weight.values(), q8_0_values(raw.data, raw.shape)):
            np.testing.assert_array_equal(ours, theirs)
    fused = [model.layers[0].attention.qkv, model.layers[0].ffn.gate_up]
    assert all(isinstance(lin.weight, Int8WeightOnly) for lin in fused)


@needs_int8
def test_int8_logits_are_close_to_float32_and_transformers(q8_0_file):
    """transformers reads the file itself (dequantizing Q8_0): it and our float32 path agree."""
    import torch
    import transformers

    path = q8_0_file
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    ids = np.random.default_rng(1).integers(0, 300, (2, 9))
    float32 = logits(load_model(path), ids)
    with torch.no_grad():
        reference = hf.eval()(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(float32, reference, rtol=1e-4, atol=1e-4)
    int8 = logits(apply(load_model(path), resolve("default", stored="int8_float32")), ids)
    # Weight-only on the file's own blocks: the weights of the dequantized float32 path, float32 sums
    # (int8 activations per row or per block: a mean error of 2% of the logits' spread).
    np.testing.assert_allclose(int8, float32, rtol=1e-4, atol=1e-4)


def test_mixed_files_keep_float32_by_default(tmp_path):
    path, _ = write_tiny_gguf(tmp_path, types=dict(dict.fromkeys(LINEARS, "Q8_0"), ffn_down="Q4_0"), **SHAPE)[:2]
    assert load_model(path).stored_compute_type == "float32"
